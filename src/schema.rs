// TEMPORARY STUB (compile-check only)
use osbuild_stages::PathSegment;
pub struct SchemaError {
    pub path: Vec<PathSegment>,
    pub message: String,
}
pub fn validate(_schema: &serde_json::Value, _instance: &serde_json::Value) -> Vec<SchemaError> {
    todo!()
}
pub fn check_schema(_schema: &serde_json::Value) -> Result<(), String> {
    todo!()
}
