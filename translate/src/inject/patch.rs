//! The admission response's JSON patch (RFC 6902) from a pod to its injected form.

use serde_json::Value;

/// The operations that turn `original` into `injected`, for an AdmissionReview response
/// (`patchType: JSONPatch`). Applying them to `original` gives `injected` exactly.
pub fn patch(original: &Value, injected: &Value) -> Vec<json_patch::PatchOperation> {
    json_patch::diff(original, injected).0
}
