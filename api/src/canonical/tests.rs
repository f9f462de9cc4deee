use super::*;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::core::v3::Metadata;
use crate::pb::google::protobuf::{Struct, Value, value::Kind as VKind};
use prost::{Message, Name};

fn s(v: &str) -> Value {
    Value {
        kind: Some(VKind::StringValue(v.into())),
    }
}

fn metadata(keys: &[&str]) -> Metadata {
    let mut fields = std::collections::HashMap::new();
    for k in keys {
        fields.insert((*k).to_string(), s(k));
    }
    let mut filter_metadata = std::collections::HashMap::new();
    filter_metadata.insert(
        "istio".to_string(),
        Struct {
            fields: fields.clone(),
        },
    );
    filter_metadata.insert("envoy.lb".to_string(), Struct { fields });
    Metadata {
        filter_metadata,
        ..Default::default()
    }
}

#[test]
fn maps_are_sorted_whatever_the_insertion_order() {
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut reversed = refs.clone();
    reversed.reverse();
    let a = Cluster {
        name: "c".into(),
        metadata: Some(metadata(&refs)),
        ..Default::default()
    };
    let b = Cluster {
        name: "c".into(),
        metadata: Some(metadata(&reversed)),
        ..Default::default()
    };
    let ca = canonicalize(&Cluster::full_name(), &a.encode_to_vec()).unwrap();
    let cb = canonicalize(&Cluster::full_name(), &b.encode_to_vec()).unwrap();
    assert_eq!(ca, cb);
    // Still the same message.
    assert_eq!(Cluster::decode(ca.as_slice()).unwrap(), a);
}

#[test]
fn maps_inside_any_are_sorted() {
    let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let any = crate::pack(&metadata(&refs));
    let again = crate::pack(&metadata(&refs));
    assert_eq!(any.value, again.value);
    let wrapped = Struct {
        fields: [("a".to_string(), s("x"))].into_iter().collect(),
    };
    let _ = wrapped;
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [&[0xff_u8][..], &[0x0a, 0x05, 0x01], &[0x03], &[0x00, 0x00]] {
        assert!(canonicalize(&Cluster::full_name(), bytes).is_err());
    }
}

proptest::proptest! {
    #[test]
    fn canonicalize_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
        let _ = canonicalize(&Cluster::full_name(), &bytes);
        let _ = canonicalize(&Metadata::full_name(), &bytes);
    }
}
