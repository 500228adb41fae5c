//! The tools the door offers, the same over the HTTP API and MCP: their names,
//! descriptions and JSON Schemas, narrowed to what one client may use.

use serde_json::{Value, json};

use crate::clients::Client;

/// Read tools and the resource type each reads.
pub const LATEST_VITALS: &str = "latest_vitals";
pub const ACTIVE_MEDICATIONS: &str = "active_medications";
pub const READ_RESOURCE: &str = "read_resource";
pub const SEARCH_RESOURCES: &str = "search_resources";
/// The write tool.
pub const RUN_ACTION: &str = "run_action";

/// The static name of a tool the door knows.
pub fn known(name: &str) -> Option<&'static str> {
    [LATEST_VITALS, ACTIVE_MEDICATIONS, READ_RESOURCE, SEARCH_RESOURCES, RUN_ACTION].into_iter().find(|t| *t == name)
}

/// One tool as a client sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: String,
    #[serde(rename = "inputSchema")]
    pub input_schema: Value,
    /// Changes something in the EHR.
    pub write: bool,
}

fn connection_property(client: &Client) -> Value {
    json!({"type": "string", "enum": client.connections, "description": "The EHR connection to read through (may be left out when the client has one)."})
}

fn type_property(client: &Client) -> Value {
    if client.read.iter().any(|t| t == "*") {
        json!({"type": "string", "description": "A FHIR resource type, e.g. Encounter."})
    } else {
        json!({"type": "string", "enum": client.read, "description": "A FHIR resource type."})
    }
}

fn patient_property() -> Value {
    json!({"type": "string", "description": "The patient's id in the EHR (`123` or `Patient/123`)."})
}

/// Does `client` have the scope for tool `name` at all (the arguments are checked
/// when it is called)?
pub fn offered(client: &Client, name: &str) -> bool {
    let reads = !client.connections.is_empty();
    match name {
        LATEST_VITALS => reads && client.may_read("Observation"),
        ACTIVE_MEDICATIONS => reads && client.may_read("MedicationRequest"),
        READ_RESOURCE | SEARCH_RESOURCES => reads && !client.read.is_empty(),
        RUN_ACTION => !client.actions.is_empty(),
        _ => false,
    }
}

/// The tools `client` may call; a tool it has no scope for is not listed.
pub fn catalogue(client: &Client) -> Vec<ToolSpec> {
    let mut out = Vec::new();
    {
        let read_tool = |name, description: &str, mut properties: serde_json::Map<String, Value>, required: &[&str]| {
            properties.insert("connection".into(), connection_property(client));
            ToolSpec {
                name,
                description: description.to_string(),
                input_schema: json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false}),
                write: false,
            }
        };
        let patient_only = || {
            let mut m = serde_json::Map::new();
            m.insert("patient".into(), patient_property());
            m
        };
        if offered(client, LATEST_VITALS) {
            out.push(read_tool(LATEST_VITALS, "The latest vital signs of a patient, one Observation per vital-sign code, read from the EHR now.", patient_only(), &["patient"]));
        }
        if offered(client, ACTIVE_MEDICATIONS) {
            out.push(read_tool(ACTIVE_MEDICATIONS, "A patient's active medication orders (MedicationRequest with status active), read from the EHR now.", patient_only(), &["patient"]));
        }
        if offered(client, READ_RESOURCE) {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), type_property(client));
            m.insert("id".into(), json!({"type": "string", "description": "The resource's id in the EHR."}));
            out.push(read_tool(READ_RESOURCE, "One FHIR resource by type and id (e.g. an Encounter), read from the EHR now.", m, &["type", "id"]));
        }
        if offered(client, SEARCH_RESOURCES) {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), type_property(client));
            m.insert("patient".into(), patient_property());
            out.push(read_tool(SEARCH_RESOURCES, "A patient's FHIR resources of one type (the first page), read from the EHR now.", m, &["type", "patient"]));
        }
    }
    if offered(client, RUN_ACTION) {
        out.push(ToolSpec {
            name: RUN_ACTION,
            description: "Run an adapter action that writes to the EHR (e.g. `epic.discharge-checklist` creates a discharge's follow-up Tasks, once however often it is called).".into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": client.actions, "description": "`adapter.action`."},
                    "input": {"type": "object", "description": "The action's input, e.g. {\"encounter\": \"Encounter/123\", \"patient\": \"Patient/456\"} for a discharge checklist."}
                },
                "required": ["action", "input"],
                "additionalProperties": false
            }),
            write: true,
        });
    }
    out
}
