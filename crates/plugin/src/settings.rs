//! A program's settings: the JSON Schema in `schemas/<program>.config.json`
//! merged with `schemas/connection.json`. The same composed schema validates
//! config files, is printed by `--about`, and generates the README tables, so
//! the three cannot disagree.

use serde_json::{Map, Value};

/// The shared connection settings (`schemas/connection.json`).
pub const CONNECTION_SCHEMA: &str = include_str!("../../../schemas/connection.json");

/// A composed settings schema and its compiled validator.
pub struct Settings {
    schema: Value,
    validator: jsonschema::Validator,
}

impl Settings {
    /// Composes the connection schema with a program's own schema (its
    /// `properties` and `required` are added to the connection's) and
    /// compiles it as JSON Schema draft 7.
    ///
    /// # Panics
    /// If either schema is not valid JSON Schema: they are compiled into the
    /// binary, and a test checks them.
    pub fn compose(program_schema: &str) -> Settings {
        let mut schema: Value =
            serde_json::from_str(CONNECTION_SCHEMA).expect("schemas/connection.json is JSON");
        let program: Value = serde_json::from_str(program_schema).expect("program schema is JSON");
        let (obj, prog) = (
            schema.as_object_mut().expect("schema is an object"),
            program.as_object().expect("schema is an object"),
        );
        for (key, value) in prog {
            match key.as_str() {
                "properties" => {
                    let props = obj
                        .get_mut("properties")
                        .and_then(Value::as_object_mut)
                        .expect("connection schema has properties");
                    for (name, prop) in value.as_object().expect("properties is an object") {
                        props.insert(name.clone(), prop.clone());
                    }
                }
                "required" => {
                    let req = obj
                        .entry("required")
                        .or_insert_with(|| Value::Array(vec![]))
                        .as_array_mut()
                        .expect("required is an array");
                    req.extend(
                        value
                            .as_array()
                            .expect("required is an array")
                            .iter()
                            .cloned(),
                    );
                }
                _ => {
                    obj.insert(key.clone(), value.clone());
                }
            }
        }
        obj.remove("$comment");
        let validator = jsonschema::draft7::options()
            .build(&schema)
            .expect("settings schema compiles");
        Settings { schema, validator }
    }

    /// The composed JSON Schema.
    pub fn schema(&self) -> &Value {
        &self.schema
    }

    /// The settings (`properties`) in schema order.
    pub fn properties(&self) -> &Map<String, Value> {
        self.schema["properties"]
            .as_object()
            .expect("schema has properties")
    }

    /// Whether `key` holds a secret (`"x-sensitive": true`): its value is
    /// never shown in a message.
    pub fn is_sensitive(&self, key: &str) -> bool {
        self.properties()
            .get(key)
            .and_then(|p| p.get("x-sensitive"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// The required keys.
    pub fn required(&self) -> Vec<&str> {
        self.schema["required"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    pub(crate) fn validator(&self) -> &jsonschema::Validator {
        &self.validator
    }
}
