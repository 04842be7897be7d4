//! Replies built from messages that are already encoded. kubelet polls
//! ListContainers and ListPodSandbox constantly, and on a busy node encoding
//! hundreds of unchanged messages every time costs more than the rest of the
//! RPC. The server keeps each object's protobuf bytes ([`Encoded`]) and sends
//! them in an [`EncodedList`]: encoding a reply is then one copy of those bytes.
//!
//! Only the server sees these types: build.rs maps the four list replies of the
//! generated `*_service_server` traits to them, while clients keep decoding the
//! ordinary generated messages (same wire format).

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// The protobuf encoding of one `M`. Cloning shares the bytes.
pub struct Encoded<M> {
    bytes: Bytes,
    of: PhantomData<fn() -> M>,
}

impl<M: Message + Default> Encoded<M> {
    /// Encodes `msg`.
    pub fn new(msg: &M) -> Encoded<M> {
        Encoded {
            bytes: msg.encode_to_vec().into(),
            of: PhantomData,
        }
    }

    /// Decodes the message back.
    pub fn decode(&self) -> Result<M, DecodeError> {
        M::decode(self.bytes.clone())
    }
}

impl<M> Encoded<M> {
    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

// By hand: derives would demand `M: Clone` / `M: Debug` for the marker.
impl<M> Clone for Encoded<M> {
    fn clone(&self) -> Self {
        Encoded {
            bytes: self.bytes.clone(),
            of: PhantomData,
        }
    }
}

impl<M> PartialEq for Encoded<M> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<M> std::fmt::Debug for Encoded<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoded<{}>({} bytes)",
            std::any::type_name::<M>().rsplit("::").next().unwrap_or(""),
            self.bytes.len()
        )
    }
}

/// A message whose one field is `repeated M` with number 1, which is the shape
/// of ListContainersResponse, StreamContainersResponse, ListPodSandboxResponse
/// and StreamPodSandboxesResponse. A nested message and a `bytes` field share
/// the wire form (tag, length, bytes), so encoding writes each item's bytes as
/// they are; decoding keeps each item's bytes without parsing them. Cloning
/// shares the items, so a server can keep a reply and send it again.
pub struct EncodedList<M> {
    items: Arc<Vec<Bytes>>,
    of: PhantomData<fn() -> M>,
}

/// The protobuf field number of the repeated field in every list reply.
const ITEMS_FIELD: u32 = 1;

impl<M> EncodedList<M> {
    /// The items, in order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = Encoded<M>> + '_ {
        self.items.iter().map(|b| Encoded {
            bytes: b.clone(),
            of: PhantomData,
        })
    }

    /// How many items the list holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<M: Message + Default> EncodedList<M> {
    /// Encodes every message of `msgs` (for replies not built from kept bytes).
    pub fn from_messages<'a>(msgs: impl IntoIterator<Item = &'a M>) -> EncodedList<M>
    where
        M: 'a,
    {
        msgs.into_iter().map(Encoded::new).collect()
    }

    /// Decodes every item.
    pub fn decode_items(&self) -> Result<Vec<M>, DecodeError> {
        self.items.iter().map(|b| M::decode(b.clone())).collect()
    }
}

impl<M> FromIterator<Encoded<M>> for EncodedList<M> {
    fn from_iter<I: IntoIterator<Item = Encoded<M>>>(iter: I) -> Self {
        EncodedList {
            items: Arc::new(iter.into_iter().map(|e| e.bytes).collect()),
            of: PhantomData,
        }
    }
}

impl<M> From<Vec<Encoded<M>>> for EncodedList<M> {
    fn from(items: Vec<Encoded<M>>) -> Self {
        items.into_iter().collect()
    }
}

impl<M> Default for EncodedList<M> {
    fn default() -> Self {
        EncodedList {
            items: Arc::default(),
            of: PhantomData,
        }
    }
}

impl<M> Clone for EncodedList<M> {
    fn clone(&self) -> Self {
        EncodedList {
            items: self.items.clone(),
            of: PhantomData,
        }
    }
}

impl<M> PartialEq for EncodedList<M> {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
    }
}

impl<M> std::fmt::Debug for EncodedList<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.items()).finish()
    }
}

// `Message` requires `Send + Sync + Debug`; the marker is `fn() -> M`, so the
// list is both whatever `M` is.
impl<M: Send + Sync + 'static> Message for EncodedList<M> {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        // By hand: prost's `bytes::encode_repeated` puts a clone of each item,
        // an atomic increment and decrement per item on another cache line.
        for item in self.items.iter() {
            encoding::encode_key(ITEMS_FIELD, WireType::LengthDelimited, buf);
            encoding::encode_varint(item.len() as u64, buf);
            buf.put_slice(item);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag == ITEMS_FIELD {
            // Only a decoded list grows, and it shares its items with nobody.
            encoding::bytes::merge_repeated(wire_type, Arc::make_mut(&mut self.items), buf, ctx)
        } else {
            encoding::skip_field(wire_type, tag, buf, ctx)
        }
    }

    fn encoded_len(&self) -> usize {
        encoding::bytes::encoded_len_repeated(ITEMS_FIELD, &self.items)
    }

    fn clear(&mut self) {
        self.items = Arc::default();
    }
}

/// The server's ListContainersResponse.
pub type ListContainersReply = EncodedList<crate::v1::Container>;
/// The server's StreamContainersResponse.
pub type StreamContainersReply = EncodedList<crate::v1::Container>;
/// The server's ListPodSandboxResponse.
pub type ListPodSandboxReply = EncodedList<crate::v1::PodSandbox>;
/// The server's StreamPodSandboxesResponse.
pub type StreamPodSandboxesReply = EncodedList<crate::v1::PodSandbox>;
