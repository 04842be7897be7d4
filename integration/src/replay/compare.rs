//! Comparing Berth's answer with the reference's, both as protobuf JSON
//! (camelCase keys, defaults left out) after the reference's values were
//! mapped to this replay's.
//!
//! The rule is "what the reference said, Berth says": every field of the
//! reference answer must be in Berth's with the same value (Berth may say
//! more: containerd 1.6 leaves out fields newer runtimes fill in), except
//! values that are this machine's (sizes, times: present where the reference
//! has them) and fields where absence means a value (state, exit code, reason).
//!
//! A compressed replay runs ahead of or behind the recording. Behind (a
//! container not yet exited that had exited in the reference) is
//! [`Verdict::Behind`]: the caller asks again until it matches. Ahead is
//! accepted only when the reference itself had the change under way at that
//! moment (a stop or start in flight) or the container ends by itself.

use serde_json::{Map, Value};

use super::mapping::Mapper;
use super::trace::{Call, OpKind, Timeline};

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Same,
    /// Berth has not reached the recorded state yet: ask again.
    Behind(String),
    Wrong(String),
}

impl Verdict {
    fn and(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Wrong(a), _) => Verdict::Wrong(a),
            (_, Verdict::Wrong(b)) => Verdict::Wrong(b),
            (Verdict::Behind(a), _) => Verdict::Behind(a),
            (_, Verdict::Behind(b)) => Verdict::Behind(b),
            _ => Verdict::Same,
        }
    }
}

/// Fields whose value is this machine's: Berth must have them (non-zero)
/// where the reference has them.
const MACHINE_VALUES: &[&str] = &[
    "createdAt",
    "startedAt",
    "finishedAt",
    "timestamp",
    "size",
    "usedBytes",
    "inodesUsed",
    "usageCoreNanoSeconds",
    "usageNanoCores",
    "workingSetBytes",
    "availableBytes",
    "usageBytes",
    "rssBytes",
    "pageFaults",
    "majorPageFaults",
    "mountpoint",
    "url",
    "runtimeName",
    "runtimeVersion",
];

/// Machine values Berth may leave out where the reference has them.
/// `usageNanoCores` is a rate: Berth needs two samples of a container and
/// reports none on its first stats call (the kubelet computes it then).
/// The memory details are a known gap of Berth's stats (rss and available
/// bytes are not read yet; page faults are, but a container's first sample
/// may have none): on these cgroup v1 hosts the kubelet takes them from its
/// own cAdvisor, not from the CRI.
const MAY_BE_ABSENT: &[&str] = &[
    "usageNanoCores",
    "rssBytes",
    "availableBytes",
    "pageFaults",
    "majorPageFaults",
];

/// Fields whose absence means a value the kubelet acts on.
const SIGNIFICANT: &[&str] = &["state", "exitCode", "reason", "attempt", "stdout", "stderr"];

/// Fields that change with a container's or pod's state; not compared when
/// Berth is legitimately ahead of the recording.
const STATE_FIELDS: &[&str] = &[
    "state",
    "startedAt",
    "finishedAt",
    "exitCode",
    "reason",
    "message",
];

/// What a comparison needs besides the two answers.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub call: &'a Call,
    pub timeline: &'a Timeline,
    pub mapper: &'a mut Mapper,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Container,
    Pod,
    Stats,
}

fn rank(kind: Kind, v: &Value) -> u8 {
    let s = v.get("state").and_then(Value::as_str).unwrap_or("");
    match (kind, s) {
        (Kind::Container, "CONTAINER_RUNNING") => 1,
        (Kind::Container, "CONTAINER_EXITED") => 2,
        (Kind::Container, "CONTAINER_UNKNOWN") => 3,
        (Kind::Pod, "SANDBOX_NOTREADY") => 1,
        _ => 0,
    }
}

fn item_id(kind: Kind, v: &Value) -> String {
    let v = if kind == Kind::Stats {
        &v["attributes"]
    } else {
        v
    };
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Compares answer `ours` of `rpc` with the mapped reference `expected`.
pub fn compare(rpc: &str, expected: &Value, ours: &Value, ctx: &mut Ctx) -> Verdict {
    match rpc {
        "ListContainers" => items(
            Kind::Container,
            &expected["containers"],
            &ours["containers"],
            ctx,
        ),
        "ListPodSandbox" => items(Kind::Pod, &expected["items"], &ours["items"], ctx),
        "ListContainerStats" => items(Kind::Stats, &expected["stats"], &ours["stats"], ctx),
        "ContainerStatus" => item(Kind::Container, &expected["status"], &ours["status"], ctx),
        "PodSandboxStatus" => item(Kind::Pod, &expected["status"], &ours["status"], ctx),
        "ListImages" => images(&expected["images"], &ours["images"], ctx),
        "ImageStatus" => match (expected.get("image"), ours.get("image")) {
            (None, None) => Verdict::Same,
            (Some(_), None) => Verdict::Wrong("image: the reference has it, Berth does not".into()),
            // A pull of it still under way in the reference: Berth's was quicker.
            (None, Some(_)) if ctx.timeline.pull_in_flight(image_name(ctx.call), ctx.call) => {
                Verdict::Same
            }
            (None, Some(o)) => {
                Verdict::Wrong(format!("image: the reference has none, Berth has {o}"))
            }
            (Some(e), Some(o)) => verdict(subset(e, o, "image", ctx.mapper)),
        },
        "ImageFsInfo" => {
            let fs = ours["imageFilesystems"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if fs.is_empty()
                || fs
                    .iter()
                    .any(|f| f["fsId"]["mountpoint"].as_str().unwrap_or("").is_empty())
            {
                Verdict::Wrong(format!(
                    "imageFilesystems: want at least one with a mountpoint, got {ours}"
                ))
            } else {
                Verdict::Same
            }
        }
        _ => verdict(subset(expected, ours, "", ctx.mapper)),
    }
}

fn image_name(call: &Call) -> &str {
    call.request["image"]["image"].as_str().unwrap_or("")
}

fn verdict(r: Result<(), String>) -> Verdict {
    match r {
        Ok(()) => Verdict::Same,
        Err(e) => Verdict::Wrong(e),
    }
}

/// Whether Berth may be at state rank `ours` of object `rid` where the
/// reference was at `expected`, at the moment of `ctx.call`.
fn ahead_allowed(kind: Kind, rid: &str, expected: u8, ours: u8, ctx: &Ctx) -> bool {
    let flights = ctx.timeline.in_flight(rid, ctx.call);
    let started = expected >= 1 || flights.contains(&OpKind::Start);
    let ended = flights.contains(&OpKind::Stop)
        || (ctx.timeline.exits_by_itself.iter().any(|c| c == rid)
            && ctx.timeline.issued_before(rid, OpKind::Start, ctx.call));
    match (kind, ours) {
        (Kind::Container, 1) => started,
        (Kind::Container, 2) => started && ended,
        (Kind::Pod, 1) => flights.contains(&OpKind::Stop),
        _ => false,
    }
}

fn item(kind: Kind, e: &Value, o: &Value, ctx: &mut Ctx) -> Verdict {
    let id = item_id(kind, o);
    let rid = ctx.mapper.recorded(&id).unwrap_or(&id).to_string();
    let (re, ro) = (rank(kind, e), rank(kind, o));
    let what = format!("{kind:?} {id}");
    if ro < re {
        return Verdict::Behind(format!(
            "{what}: state {} where the reference had {}",
            state(o),
            state(e)
        ));
    }
    if ro > re {
        if !ahead_allowed(kind, &rid, re, ro, ctx) {
            return Verdict::Wrong(format!(
                "{what}: state {} where the reference had {} and nothing under way explains it",
                state(o),
                state(e)
            ));
        }
        let mut e = e.clone();
        if let Some(m) = e.as_object_mut() {
            m.retain(|k, _| !STATE_FIELDS.contains(&k.as_str()));
        }
        let mut o = o.clone();
        if let Some(m) = o.as_object_mut() {
            m.retain(|k, _| !STATE_FIELDS.contains(&k.as_str()));
        }
        return verdict(subset(&e, &o, &what, ctx.mapper));
    }
    verdict(subset(e, o, &what, ctx.mapper))
}

fn state(v: &Value) -> &str {
    v.get("state")
        .and_then(Value::as_str)
        .unwrap_or("(default)")
}

fn items(kind: Kind, e: &Value, o: &Value, ctx: &mut Ctx) -> Verdict {
    let empty = Vec::new();
    let es = e.as_array().unwrap_or(&empty);
    let os = o.as_array().unwrap_or(&empty);
    let filtered = ctx
        .call
        .request
        .get("filter")
        .is_some_and(|f| f.get("state").is_some());
    let mut v = Verdict::Same;
    for ei in es {
        let id = item_id(kind, ei);
        let rid = ctx.mapper.recorded(&id).unwrap_or(&id).to_string();
        match os.iter().find(|x| item_id(kind, x) == id) {
            Some(oi) => v = v.and(item(kind, ei, oi, ctx)),
            None => {
                let flights = ctx.timeline.in_flight(&rid, ctx.call);
                let r = rank(kind, ei);
                let advanced = filtered && ahead_allowed(kind, &rid, r, r + 1, ctx);
                // containerd lists exited containers' stats with no usage at
                // all (only the writable layer); Berth lists containers that
                // have a cgroup. The kubelet drops terminated containers' stats.
                let no_usage =
                    kind == Kind::Stats && ei.get("cpu").is_none() && ei.get("memory").is_none();
                if !flights.contains(&OpKind::Remove) && !advanced && !no_usage {
                    v = v.and(Verdict::Wrong(format!(
                        "{kind:?} {id} (recorded {rid}): listed by the reference, not by Berth"
                    )));
                }
            }
        }
    }
    for oi in os {
        let id = item_id(kind, oi);
        if es.iter().any(|x| item_id(kind, x) == id) {
            continue;
        }
        let Some(rid) = ctx.mapper.recorded(&id).map(str::to_string) else {
            v = v.and(Verdict::Wrong(format!(
                "{kind:?} {id}: listed by Berth, unknown to the trace"
            )));
            continue;
        };
        let flights = ctx.timeline.in_flight(&rid, ctx.call);
        if flights.contains(&OpKind::Create)
            || flights.contains(&OpKind::Start)
            || kind == Kind::Stats
        {
            continue;
        }
        if filtered {
            v = v.and(Verdict::Behind(format!(
                "{kind:?} {id}: still matches the filter"
            )));
        } else {
            v = v.and(Verdict::Wrong(format!(
                "{kind:?} {id} (recorded {rid}): listed by Berth, not by the reference"
            )));
        }
    }
    v
}

/// Images are matched by their tags; the reference's own sandbox image is
/// left out (see `exceptions::REFERENCE_ONLY_IMAGES`).
fn images(e: &Value, o: &Value, ctx: &mut Ctx) -> Verdict {
    let empty = Vec::new();
    let os = o.as_array().unwrap_or(&empty);
    let mut v = Verdict::Same;
    for ei in e.as_array().unwrap_or(&empty) {
        let tags: Vec<&str> = ei["repoTags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if tags
            .iter()
            .any(|t| super::exceptions::reference_only_image(t).is_some())
        {
            continue;
        }
        let found = os.iter().find(|oi| {
            tags.iter().all(|t| {
                oi["repoTags"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == t))
            })
        });
        match found {
            Some(oi) => {
                v = v.and(verdict(subset(
                    ei,
                    oi,
                    &format!("image {tags:?}"),
                    ctx.mapper,
                )))
            }
            None => {
                v = v.and(Verdict::Wrong(format!(
                    "image {tags:?}: listed by the reference, not by Berth"
                )))
            }
        }
    }
    v
}

/// `e` ⊆ `o` as described in the module doc; `path` names the place for messages.
pub fn subset(e: &Value, o: &Value, path: &str, mapper: &mut Mapper) -> Result<(), String> {
    match (e, o) {
        (Value::Object(em), Value::Object(om)) => object(em, om, path, mapper),
        (Value::Array(ea), Value::Array(oa)) => {
            for x in ea {
                let hit = oa.iter().any(|y| {
                    let mut m = mapper.clone();
                    if subset(x, y, path, &mut m).is_ok() {
                        *mapper = m;
                        true
                    } else {
                        false
                    }
                });
                if !hit {
                    return Err(format!(
                        "{path}: Berth has no element matching {x} (it has {o})"
                    ));
                }
            }
            Ok(())
        }
        (Value::String(es), Value::String(os)) if es != os => digest_ref(es, os, path, mapper),
        _ if e == o => Ok(()),
        _ => Err(format!("{path}: want {e}, Berth says {o}")),
    }
}

fn object(
    em: &Map<String, Value>,
    om: &Map<String, Value>,
    path: &str,
    mapper: &mut Mapper,
) -> Result<(), String> {
    for (k, ev) in em {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let ov = om.get(k);
        if MACHINE_VALUES.contains(&k.as_str()) {
            if is_default(ev) || MAY_BE_ABSENT.contains(&k.as_str()) {
                continue;
            }
            match ov {
                Some(ov) if !is_default(ov) => continue,
                _ => return Err(format!("{p}: the reference has {ev}, Berth has none")),
            }
        }
        match ov {
            Some(ov) => subset(ev, ov, &p, mapper)?,
            None => return Err(format!("{p}: the reference has {ev}, Berth has none")),
        }
    }
    for k in SIGNIFICANT {
        if !em.contains_key(*k) {
            if let Some(ov) = om.get(*k) {
                if !is_default(ov) {
                    let p = if path.is_empty() {
                        k.to_string()
                    } else {
                        format!("{path}.{k}")
                    };
                    return Err(format!(
                        "{p}: the reference has the default, Berth says {ov}"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn is_default(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Two `name@sha256:…` references (or two bare image digests) with the same
/// name: the digests are this machine's images, so they are learned once and
/// must stay consistent.
fn digest_ref(e: &str, o: &str, path: &str, mapper: &mut Mapper) -> Result<(), String> {
    let split = |s: &str| -> Option<(String, String)> {
        match s.split_once('@') {
            Some((n, d)) if d.starts_with("sha256:") => Some((n.to_string(), d.to_string())),
            None if s.starts_with("sha256:") && s.len() == 71 => {
                Some((String::new(), s.to_string()))
            }
            _ => None,
        }
    };
    match (split(e), split(o)) {
        (Some((en, ed)), Some((on, od))) if en == on => match mapper.ours(&ed) {
            None => mapper.learn(&format!("{path} digest"), &ed, &od),
            Some(known) if known == od => Ok(()),
            Some(known) => Err(format!("{path}: want {en}@{known}, Berth says {o:?}")),
        },
        _ => Err(format!("{path}: want {e:?}, Berth says {o:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subset_takes_extra_fields_but_not_changed_or_missing_ones() {
        let mut m = Mapper::default();
        let e = json!({"a": 1, "l": {"x": "y"}, "createdAt": "5", "tags": ["t1"]});
        let o = json!({"a": 1, "l": {"x": "y", "z": "w"}, "createdAt": "9", "tags": ["t0", "t1"], "user": {}});
        subset(&e, &o, "", &mut m).unwrap();
        subset(
            &e,
            &json!({"a": 2, "l": {"x": "y"}, "createdAt": "9", "tags": ["t1"]}),
            "",
            &mut m,
        )
        .unwrap_err();
        assert!(subset(
            &e,
            &json!({"a": 1, "l": {"x": "y"}, "tags": ["t1"]}),
            "",
            &mut m
        )
        .unwrap_err()
        .contains("createdAt"));
        // An exit code the reference left out is 0.
        subset(
            &json!({"state": "CONTAINER_EXITED"}),
            &json!({"state": "CONTAINER_EXITED", "exitCode": 137}),
            "",
            &mut m,
        )
        .unwrap_err();
    }

    #[test]
    fn digests_are_learned_once_and_must_stay_consistent() {
        let mut m = Mapper::default();
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let d3 = format!("sha256:{}", "3".repeat(64));
        subset(
            &json!(format!("r/x@{d1}")),
            &json!(format!("r/x@{d2}")),
            "",
            &mut m,
        )
        .unwrap();
        assert_eq!(m.ours(&d1), Some(d2.as_str()));
        subset(
            &json!(format!("r/y@{d1}")),
            &json!(format!("r/x@{d3}")),
            "",
            &mut m,
        )
        .unwrap_err();
    }
}
