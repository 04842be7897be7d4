//! Serde for the CRI messages kept inside records. The generated prost types have
//! no serde impls, and their protobuf encoding is the one format guaranteed to
//! stay readable as the CRI evolves (unknown fields are skipped), so a record
//! stores the message's protobuf bytes, base64-encoded inside its JSON.

use base64::Engine;
use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

pub fn serialize<M: prost::Message, S: Serializer>(msg: &M, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(msg.encode_to_vec()))
}

pub fn deserialize<'de, M: prost::Message + Default, D: Deserializer<'de>>(
    d: D,
) -> Result<M, D::Error> {
    let text = String::deserialize(d)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(D::Error::custom)?;
    M::decode(bytes.as_slice()).map_err(D::Error::custom)
}
