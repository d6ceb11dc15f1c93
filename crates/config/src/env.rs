//! Settings as environment variables, both ways: `CRESCENDO_<SECTION>__<KEY>` read into the
//! tree, and a tree written out as the variables that reproduce it (what `crescendo up` gives
//! each node it starts, so no variable name is ever typed by hand).

use crate::Settings;
use std::collections::BTreeSet;

/// Every key path of the settings tree (`http.listen`, `data_dir`…), lower-case.
pub(crate) fn known_keys() -> BTreeSet<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_lowercase());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(
        "",
        &serde_json::to_value(Settings::default()).expect("settings serialise"),
        &mut out,
    );
    out
}

/// Environment values are text; numbers and booleans are read as such so `u64` keys work.
pub(crate) fn parse_env_value(v: &str) -> figment::value::Value {
    v.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(v.to_string()))
}

impl Settings {
    /// The `CRESCENDO_*` environment variables that reproduce these settings on top of the
    /// defaults: one for each key whose value differs from its default, named from its path
    /// (`store.postgres_url` → `CRESCENDO_STORE__POSTGRES_URL`). Strings go as they are unless
    /// they would read back as another type (then quoted); numbers, booleans and lists in the
    /// TOML syntax the loader reads. A key set to `None` where the default has a value cannot
    /// be written and is left out (no key has such a default).
    pub fn to_env(&self) -> Vec<(String, String)> {
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialise");
        let mine = serde_json::to_value(self).expect("settings serialise");
        let mut out = Vec::new();
        diff("", &mine, &defaults, &mut out);
        out
    }
}

/// Adds to `out` a variable for each leaf of `mine` that differs from `defaults`.
fn diff(
    path: &str,
    mine: &serde_json::Value,
    defaults: &serde_json::Value,
    out: &mut Vec<(String, String)>,
) {
    use serde_json::Value;
    if let Value::Object(m) = mine {
        for (k, v) in m {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}__{k}")
            };
            diff(&p, v, defaults.get(k).unwrap_or(&Value::Null), out);
        }
        return;
    }
    if mine == defaults {
        return;
    }
    let text = match mine {
        Value::Null => return,
        Value::String(s) if parse_env_value(s).as_str() == Some(s.as_str()) => s.clone(),
        other => other.to_string(),
    };
    out.push((format!("CRESCENDO_{}", path.to_uppercase()), text));
}
