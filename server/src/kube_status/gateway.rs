//! Gateway API statuses: stamped with generations and transition times, merged with the
//! route parents of other controllers.

use serde_json::Value;

use super::CONTROLLER;

/// Stamps `desired` (a status without times) against `current` (the object's status in the
/// cluster, `Null` when it has none) for an object at `generation`, at time `now`; keeps
/// the route parents of other controllers.
pub(super) fn merge(desired: &Value, current: &Value, generation: i64, now: &str) -> Value {
    let mut out = desired.clone();
    if let Some(conditions) = out.get_mut("conditions") {
        stamp(conditions, current.get("conditions"), generation, now);
    }
    if let Some(Value::Array(listeners)) = out.get_mut("listeners") {
        for l in listeners {
            let before = find(current.get("listeners"), |c| c.get("name") == l.get("name"));
            if let Some(conditions) = l.get_mut("conditions") {
                stamp(
                    conditions,
                    before.and_then(|b| b.get("conditions")),
                    generation,
                    now,
                );
            }
        }
    }
    if let Some(Value::Array(parents)) = out.get_mut("parents") {
        for p in parents.iter_mut() {
            let before = find(current.get("parents"), |c| {
                c.get("parentRef") == p.get("parentRef")
                    && c.get("controllerName") == p.get("controllerName")
            });
            if let Some(conditions) = p.get_mut("conditions") {
                stamp(
                    conditions,
                    before.and_then(|b| b.get("conditions")),
                    generation,
                    now,
                );
            }
        }
        let others = current
            .get("parents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|c| c.get("controllerName").and_then(Value::as_str) != Some(CONTROLLER))
            .cloned();
        let mut all: Vec<Value> = others.collect();
        all.append(parents);
        *parents = all;
    }
    out
}

fn find(list: Option<&Value>, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    list.and_then(Value::as_array)?.iter().find(|v| pred(v))
}

/// Sets each condition's `observedGeneration`, and its `lastTransitionTime` to the current
/// one's when its status did not change (else `now`).
fn stamp(conditions: &mut Value, current: Option<&Value>, generation: i64, now: &str) {
    let Value::Array(list) = conditions else {
        return;
    };
    for c in list {
        let before = find(current, |b| b.get("type") == c.get("type"));
        let time = match before {
            Some(b) if b.get("status") == c.get("status") => b
                .get("lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| now.into()),
            _ => now.into(),
        };
        if let Value::Object(m) = c {
            m.insert("observedGeneration".into(), generation.into());
            m.insert("lastTransitionTime".into(), time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cond(t: &str, s: &str) -> Value {
        json!({"type": t, "status": s, "reason": t, "message": ""})
    }

    #[test]
    fn times_move_only_with_a_status_and_generations_follow_the_object() {
        let desired = json!({"conditions": [cond("Accepted", "True"), cond("Programmed", "False")],
            "listeners": [{"name": "http", "attachedRoutes": 1, "conditions": [cond("Accepted", "True")]}]});
        let first = merge(&desired, &Value::Null, 1, "T1");
        assert_eq!(first["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(
            first["listeners"][0]["conditions"][0]["observedGeneration"],
            1
        );
        // Unchanged: identical to what is there, so nothing is written.
        assert_eq!(merge(&desired, &first, 1, "T2"), first);
        // Programmed flips: only its time moves; a new generation is observed by all.
        let desired = json!({"conditions": [cond("Accepted", "True"), cond("Programmed", "True")],
            "listeners": [{"name": "http", "attachedRoutes": 1, "conditions": [cond("Accepted", "True")]}]});
        let next = merge(&desired, &first, 2, "T3");
        assert_eq!(next["conditions"][0]["lastTransitionTime"], "T1");
        assert_eq!(next["conditions"][1]["lastTransitionTime"], "T3");
        assert_eq!(next["conditions"][0]["observedGeneration"], 2);
        assert_eq!(
            next["listeners"][0]["conditions"][0]["lastTransitionTime"],
            "T1"
        );
    }

    #[test]
    fn route_parents_of_other_controllers_stay() {
        let theirs = json!({"parentRef": {"name": "other"}, "controllerName": "example.com/gw",
            "conditions": [cond("Accepted", "True")]});
        let ours = |accepted: &str| {
            json!({"parentRef": {"name": "gw"}, "controllerName": CONTROLLER,
                "conditions": [cond("Accepted", accepted)]})
        };
        let current = json!({"parents": [theirs.clone(), ours("False")]});
        let desired = json!({"parents": [ours("True")]});
        let out = merge(&desired, &current, 3, "T");
        let parents = out["parents"].as_array().expect("parents");
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], theirs);
        assert_eq!(parents[1]["conditions"][0]["status"], "True");
    }
}
