//! Fills in the fields the protobuf JSON mapping leaves out when they hold their
//! default value. crictl prints every field (an enum at its first value, a zero
//! count, an empty list), and operators grep for them: a ready pod must show
//! `"state": "SANDBOX_READY"` even though that is enum value 0. The schema comes
//! from the proto crate's descriptor set, so no field list is kept by hand.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use serde_json::Value;

struct Schema {
    messages: HashMap<String, DescriptorProto>,
    /// Enum full name -> name of its first (default) value.
    enums: HashMap<String, String>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut s = Schema {
            messages: HashMap::new(),
            enums: HashMap::new(),
        };
        // The descriptor set is compiled into the proto crate; if it could not
        // be decoded the output just keeps the omitted defaults omitted.
        if let Ok(set) = FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET) {
            for file in set.file {
                let scope = format!(".{}", file.package());
                for e in &file.enum_type {
                    add_enum(&mut s, &scope, e);
                }
                for m in file.message_type {
                    add_message(&mut s, &scope, m);
                }
            }
        }
        s
    })
}

fn add_enum(s: &mut Schema, scope: &str, e: &prost_types::EnumDescriptorProto) {
    if let Some(first) = e.value.first() {
        s.enums
            .insert(format!("{scope}.{}", e.name()), first.name().to_string());
    }
}

fn add_message(s: &mut Schema, scope: &str, m: DescriptorProto) {
    let full = format!("{scope}.{}", m.name());
    for e in &m.enum_type {
        add_enum(s, &full, e);
    }
    for nested in m.nested_type.clone() {
        add_message(s, &full, nested);
    }
    s.messages.insert(full, m);
}

fn json_name(f: &FieldDescriptorProto) -> String {
    if let Some(n) = &f.json_name {
        return n.clone();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in f.name().chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn is_map(f: &FieldDescriptorProto) -> Option<&'static DescriptorProto> {
    let entry = schema().messages.get(f.type_name())?;
    entry
        .options
        .as_ref()
        .and_then(|o| o.map_entry)
        .unwrap_or(false)
        .then_some(entry)
}

fn default_for(s: &Schema, f: &FieldDescriptorProto) -> Option<Value> {
    if f.label() == Label::Repeated {
        return Some(if is_map(f).is_some() {
            Value::Object(Default::default())
        } else {
            Value::Array(Vec::new())
        });
    }
    Some(match f.r#type() {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => 0.into(),
        Type::Float | Type::Double => 0.into(),
        // The JSON mapping writes 64-bit integers as strings.
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            Value::String("0".into())
        }
        Type::Enum => Value::String(s.enums.get(f.type_name())?.clone()),
        // An unset message stays absent, as does an unset oneof.
        Type::Message | Type::Group => return None,
    })
}

/// Adds the omitted default-valued fields of `value`, a message of protobuf
/// type `type_name` (".runtime.v1.PodSandbox"), recursively.
pub fn fill(value: &mut Value, type_name: &str) {
    let s = schema();
    let Some(msg) = s.messages.get(type_name) else {
        return;
    };
    let Value::Object(obj) = value else { return };
    for f in &msg.field {
        let name = json_name(f);
        let in_oneof = f.oneof_index.is_some() && !f.proto3_optional();
        match obj.get_mut(&name) {
            None => {
                if !in_oneof {
                    if let Some(d) = default_for(s, f) {
                        obj.insert(name, d);
                    }
                }
            }
            Some(v) if f.r#type() == Type::Message => {
                if let Some(entry) = is_map(f) {
                    let value_field = entry.field.iter().find(|e| e.number() == 2);
                    if let (Some(vf), Value::Object(m)) = (value_field, v) {
                        if vf.r#type() == Type::Message {
                            for item in m.values_mut() {
                                fill(item, vf.type_name());
                            }
                        }
                    }
                } else if let Value::Array(items) = v {
                    for item in items {
                        fill(item, f.type_name());
                    }
                } else {
                    fill(v, f.type_name());
                }
            }
            Some(_) => {}
        }
    }
}

/// The protobuf full name of a generated `berth_proto::v1` type.
pub fn type_name_of<T>() -> String {
    let rust = std::any::type_name::<T>();
    format!(".runtime.v1.{}", rust.rsplit("::").next().unwrap_or(rust))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{ListPodSandboxResponse, PodSandbox, PodSandboxMetadata};

    #[test]
    fn defaults_are_filled_recursively() {
        let resp = ListPodSandboxResponse {
            items: vec![PodSandbox {
                id: "p1".into(),
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        let mut v = serde_json::to_value(&resp).unwrap();
        assert!(
            v["items"][0].get("state").is_none(),
            "pbjson omits defaults"
        );
        fill(&mut v, &type_name_of::<ListPodSandboxResponse>());
        let pod = &v["items"][0];
        assert_eq!(pod["state"], "SANDBOX_READY");
        assert_eq!(pod["createdAt"], "0");
        assert_eq!(pod["labels"], serde_json::json!({}));
        assert_eq!(pod["runtimeHandler"], "");
        assert_eq!(pod["metadata"]["attempt"], 0);
        assert_eq!(pod["metadata"]["namespace"], "");
        assert_eq!(pod["id"], "p1");
    }
}
