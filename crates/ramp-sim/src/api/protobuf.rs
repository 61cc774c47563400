//! Just enough of Kubernetes' protobuf wire format to accept what `kubectl create <kind>`
//! sends (it always encodes built-in objects as protobuf): the `k8s\0` envelope and the
//! Namespace, ConfigMap, Secret and ServiceAccount messages. Anything else is 415.

use serde_json::{Map, Value, json};

const MAGIC: &[u8] = b"k8s\0";

/// One decoded protobuf field: its number and either a varint or a length-delimited payload.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Field::Bytes(bytes)
            }
            1 => {
                pos += 8;
                continue;
            }
            5 => {
                pos += 4;
                continue;
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Option<Value> {
    std::str::from_utf8(bytes)
        .ok()
        .map(|s| Value::String(s.to_owned()))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `map<string, string>` (or `map<string, bytes>` rendered as base64) entry.
fn map_entry(bytes: &[u8], binary: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (number, field) in fields(bytes)? {
        if let Field::Bytes(b) = field {
            match number {
                1 => key = std::str::from_utf8(b).ok()?.to_owned(),
                2 if binary => value = Value::String(base64(b)),
                2 => value = text(b)?,
                _ => {}
            }
        }
    }
    Some((key, value))
}

fn object_meta(bytes: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (number, field) in fields(bytes)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => _ = meta.insert("name".into(), text(b)?),
            2 => _ = meta.insert("generateName".into(), text(b)?),
            3 => _ = meta.insert("namespace".into(), text(b)?),
            11 => {
                let (k, v) = map_entry(b, false)?;
                labels.insert(k, v);
            }
            12 => {
                let (k, v) = map_entry(b, false)?;
                annotations.insert(k, v);
            }
            14 => finalizers.push(text(b)?),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(meta))
}

/// Decodes a protobuf-encoded object into its JSON form, or `None` if the kind is not one
/// this module knows or the bytes are malformed.
pub fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(MAGIC)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => {
                for (n, f) in fields(b)? {
                    if let Field::Bytes(s) = f {
                        let s = std::str::from_utf8(s).ok()?.to_owned();
                        if n == 1 {
                            api_version = s;
                        } else if n == 2 {
                            kind = s;
                        }
                    }
                }
            }
            2 => raw = b,
            _ => {}
        }
    }
    let mut object = json!({"apiVersion": api_version, "kind": kind});
    let mut maps: [(Map<String, Value>, &str); 3] = [
        (Map::new(), "data"),
        (Map::new(), "binaryData"),
        (Map::new(), "stringData"),
    ];
    for (number, field) in fields(raw)? {
        match (kind.as_str(), number, field) {
            (_, 1, Field::Bytes(b)) => object["metadata"] = object_meta(b)?,
            ("Namespace", 2, Field::Bytes(b)) => {
                let finalizers: Vec<Value> = fields(b)?
                    .into_iter()
                    .filter_map(|(_, f)| {
                        if let Field::Bytes(s) = f {
                            text(s)
                        } else {
                            None
                        }
                    })
                    .collect();
                object["spec"] = json!({"finalizers": finalizers});
            }
            ("ConfigMap", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                maps[0].0.insert(k, v);
            }
            ("ConfigMap", 3, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                maps[1].0.insert(k, v);
            }
            ("ConfigMap", 4, Field::Varint(v)) | ("Secret", 5, Field::Varint(v)) => {
                object["immutable"] = json!(v != 0)
            }
            ("Secret", 2, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, true)?;
                maps[0].0.insert(k, v);
            }
            ("Secret", 3, Field::Bytes(b)) => object["type"] = text(b)?,
            ("Secret", 4, Field::Bytes(b)) => {
                let (k, v) = map_entry(b, false)?;
                maps[2].0.insert(k, v);
            }
            ("ServiceAccount", 4, Field::Varint(v)) => {
                object["automountServiceAccountToken"] = json!(v != 0)
            }
            ("Namespace" | "ConfigMap" | "Secret" | "ServiceAccount", _, _) => {}
            _ => return None,
        }
    }
    for (map, name) in maps {
        if !map.is_empty() {
            object[name] = Value::Object(map);
        }
    }
    Some(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3 | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_namespace_as_kubectl_create_sends_it() {
        let meta = [
            field(1, b"team-a"),
            field(11, &[field(1, b"env"), field(2, b"dev")].concat()),
        ]
        .concat();
        let raw = [field(1, &meta), field(2, &field(1, b"kubernetes"))].concat();
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body),
            Some(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"env": "dev"}},
                "spec": {"finalizers": ["kubernetes"]},
            }))
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hi!"), "aGkh");
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let raw = field(2, b"x");
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(decode(&body), None);
    }
}
