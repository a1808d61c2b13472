//! Checks a JSON answer against PrusaLink's OpenAPI document (`tests/data/prusalink/openapi.yaml`):
//! the subset of OpenAPI 3.0 schemas that document uses (`$ref`, `allOf`, `oneOf`, `type`,
//! `properties`, `required`, `enum`, `items`). Stricter than the document in one way: a field
//! that no schema of the object names is an error, so the simulated printer cannot drift from
//! the published shapes unnoticed. Looser in one: `oneOf` passes when any branch passes,
//! because the document's `Job` is `oneOf [JobSerialPrint, JobFilePrint]` and a file job
//! matches both (neither forbids extra fields).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::collections::BTreeSet;
use yaml_rust2::{Yaml, YamlLoader};

/// The OpenAPI document, loaded.
pub struct Spec {
    doc: Yaml,
}

impl Spec {
    /// Loads the document shipped in `tests/data/prusalink/openapi.yaml`.
    pub fn load() -> Result<Spec> {
        let text = String::from_utf8(crate::data("prusalink/openapi.yaml"))?;
        let mut docs = YamlLoader::load_from_str(&text).context("openapi.yaml is YAML")?;
        let doc = docs.pop().ok_or_else(|| anyhow!("openapi.yaml is empty"))?;
        Ok(Spec { doc })
    }

    /// The schema of the JSON answer `code` to `method path` (a path as the document spells it,
    /// e.g. `/api/v1/status`).
    pub fn response(&self, method: &str, path: &str, code: u16) -> Result<&Yaml> {
        let op = &self.doc["paths"][path][method];
        let responses = &op["responses"];
        // `200:` is an integer key in YAML; `"200":` would be a string.
        let r = responses
            .as_hash()
            .and_then(|h| h.get(&Yaml::Integer(code.into())))
            .unwrap_or(&responses[code.to_string().as_str()]);
        let schema = &r["content"]["application/json"]["schema"];
        if schema.is_badvalue() {
            bail!("the document has no JSON answer {code} to {method} {path}");
        }
        Ok(schema)
    }

    /// A component schema by name, e.g. `Storage`.
    pub fn component(&self, name: &str) -> Result<&Yaml> {
        let s = &self.doc["components"]["schemas"][name];
        if s.is_badvalue() {
            bail!("no component schema {name}");
        }
        Ok(s)
    }

    /// Every way `value` departs from `schema`, as `where: what` lines.
    pub fn check(&self, value: &Value, schema: &Yaml) -> Vec<String> {
        let mut errors = vec![];
        self.walk(value, schema, "$", true, &mut errors);
        errors
    }

    fn resolve<'a>(&'a self, schema: &'a Yaml) -> &'a Yaml {
        match schema["$ref"].as_str() {
            Some(r) => match r.strip_prefix("#/components/schemas/") {
                Some(name) => &self.doc["components"]["schemas"][name],
                None => &Yaml::BadValue,
            },
            None => schema,
        }
    }

    /// The property names a schema (through `allOf`, `oneOf`, `$ref`) names; `None` when it
    /// names none (a free-form object).
    fn known(&self, schema: &Yaml, out: &mut BTreeSet<String>) -> bool {
        let s = self.resolve(schema);
        let mut any = false;
        if let Some(props) = s["properties"].as_hash() {
            out.extend(props.keys().filter_map(|k| k.as_str().map(str::to_string)));
            any = true;
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for sub in s[key].as_vec().into_iter().flatten() {
                any |= self.known(sub, out);
            }
        }
        any
    }

    /// `whole`: `v` is checked against its whole schema here, not against one part of an
    /// `allOf`/`oneOf` (only then is a field no part names an error).
    fn walk(&self, v: &Value, schema: &Yaml, at: &str, whole: bool, errors: &mut Vec<String>) {
        let s = self.resolve(schema);
        if s.is_badvalue() {
            errors.push(format!("{at}: unresolvable schema {schema:?}"));
            return;
        }
        for sub in s["allOf"].as_vec().into_iter().flatten() {
            self.walk(v, sub, at, false, errors);
        }
        if let Some(branches) = s["oneOf"].as_vec() {
            let fits = branches.iter().any(|b| {
                let mut e = vec![];
                self.walk(v, b, at, false, &mut e);
                e.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: fits no branch of oneOf"));
            }
        }
        if let Some(t) = s["type"].as_str() {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: {v} is not of type {t}"));
                return;
            }
        }
        if let Some(allowed) = s["enum"].as_vec() {
            let fits = allowed.iter().any(|a| match (a, v) {
                (Yaml::String(a), Value::String(b)) => a == b,
                (Yaml::Integer(a), b) => b.as_i64() == Some(*a),
                _ => false,
            });
            if !fits {
                errors.push(format!("{at}: {v} is not one of the document's values"));
            }
        }
        if let Some(obj) = v.as_object() {
            for r in s["required"].as_vec().into_iter().flatten() {
                if let Some(k) = r.as_str()
                    && !obj.contains_key(k)
                {
                    errors.push(format!("{at}: required field {k} is missing"));
                }
            }
            for (k, field) in obj {
                if let Some(sub) = s["properties"][k.as_str()]
                    .as_hash()
                    .map(|_| &s["properties"][k.as_str()])
                {
                    self.walk(field, sub, &format!("{at}.{k}"), true, errors);
                }
            }
            let mut names = BTreeSet::new();
            if whole && self.known(schema, &mut names) {
                for k in obj.keys().filter(|k| !names.contains(k.as_str())) {
                    let e = format!("{at}: field {k} is not in the document");
                    if !errors.contains(&e) {
                        errors.push(e);
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (s["items"].as_hash().map(|_| &s["items"]), v.as_array())
        {
            for (i, item) in arr.iter().enumerate() {
                self.walk(item, items, &format!("{at}[{i}]"), true, errors);
            }
        }
    }
}
