// TEMPORARY STUB (compile-check only); replaced by the real parser.
use osbuild_stages::PathSegment;
use std::ops::Range;
#[derive(Debug)]
pub struct Node {
    pub span: Range<usize>,
    pub value: NodeValue,
}
#[derive(Debug)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}
#[derive(Debug)]
pub struct Member {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: Node,
}
pub struct ParseError {
    pub span: Range<usize>,
    pub message: String,
}
pub fn parse(_src: &str) -> Result<Node, ParseError> {
    todo!()
}
impl Node {
    pub fn to_value(&self) -> serde_json::Value {
        todo!()
    }
    pub fn member(&self, _key: &str) -> Option<&Member> {
        todo!()
    }
    pub fn find(&self, _path: &[PathSegment]) -> Option<&Node> {
        todo!()
    }
    pub fn key_span(&self, _path: &[PathSegment]) -> Option<Range<usize>> {
        todo!()
    }
    pub fn kind(&self) -> &'static str {
        todo!()
    }
}
