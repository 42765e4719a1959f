//! The tool registry: named tools with a description, a JSON schema derived from a Rust argument
//! type (schemars, draft-07, sub-schemas inlined so the model sees one flat object), and an async
//! handler. [`ToolRegistry::subset`] is the seed's `build_toolset(*names)`, except that a missing
//! name is an error rather than a warning.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_openai::types::chat::{ChatCompletionTool, ChatCompletionTools, FunctionObject};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A tool's failure, returned to the model as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

impl ToolError {
    pub fn new(msg: impl Into<String>) -> Self {
        ToolError(msg.into())
    }
}

/// What a handler returns.
pub type ToolFuture = Pin<Box<dyn Future<Output = Result<Value, ToolError>> + Send>>;
type Handler = Arc<dyn Fn(Map<String, Value>) -> ToolFuture + Send + Sync>;

/// One tool.
#[derive(Clone)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// The JSON schema of the arguments (an object schema).
    pub parameters: Value,
    handler: Handler,
}

impl std::fmt::Debug for ToolDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolDef")
            .field("name", &self.name)
            .field("parameters", &self.parameters)
            .finish()
    }
}

/// The JSON schema of an argument type, as sent to the model: draft-07, sub-schemas inlined,
/// without `$schema`, `title` and `definitions`, always with `type: object` and `properties`.
pub fn args_schema<A: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut v = generator.into_root_schema_for::<A>().to_value();
    if let Some(o) = v.as_object_mut() {
        o.remove("title");
        o.remove("$schema");
        o.remove("definitions");
        o.remove("$defs");
        o.insert("type".into(), Value::String("object".into()));
        o.entry("properties")
            .or_insert_with(|| Value::Object(Map::new()));
    }
    v
}

impl ToolDef {
    /// A tool whose arguments deserialize into `A`; its schema is derived from `A`.
    pub fn typed<A, F, Fut>(name: &str, description: &str, f: F) -> Self
    where
        A: JsonSchema + DeserializeOwned + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let f = Arc::new(f);
        let tool = name.to_string();
        let handler: Handler = Arc::new(move |args: Map<String, Value>| {
            let f = f.clone();
            let tool = tool.clone();
            Box::pin(async move {
                let a: A = serde_json::from_value(Value::Object(args))
                    .map_err(|e| ToolError(format!("{tool}: invalid arguments: {e}")))?;
                f(a).await
            })
        });
        ToolDef {
            name: name.to_string(),
            description: description.to_string(),
            parameters: args_schema::<A>(),
            handler,
        }
    }

    /// A tool with a hand-written schema and untyped arguments.
    pub fn raw<F, Fut>(name: &str, description: &str, parameters: Value, f: F) -> Self
    where
        F: Fn(Map<String, Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ToolError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |args| Box::pin(f(args)));
        ToolDef {
            name: name.to_string(),
            description: description.to_string(),
            parameters,
            handler,
        }
    }

    /// Run the tool on already-repaired arguments.
    pub fn call(&self, args: Map<String, Value>) -> ToolFuture {
        (self.handler)(args)
    }

    /// The OpenAI `tools` entry.
    pub fn openai_tool(&self) -> ChatCompletionTools {
        ChatCompletionTools::Function(ChatCompletionTool {
            function: FunctionObject {
                name: self.name.clone(),
                description: Some(self.description.clone()),
                parameters: Some(self.parameters.clone()),
                strict: None,
            },
        })
    }
}

/// Tools by name.
#[derive(Debug, Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, ToolDef>,
}

impl ToolRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) a tool.
    pub fn register(&mut self, tool: ToolDef) {
        self.tools.insert(tool.name.clone(), tool);
    }

    /// Remove a tool; true if it was there.
    pub fn unregister(&mut self, name: &str) -> bool {
        self.tools.remove(name).is_some()
    }

    pub fn get(&self, name: &str) -> Option<&ToolDef> {
        self.tools.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.tools.keys().map(|s| s.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools named, in that order of preference; every missing name is reported.
    pub fn subset(&self, names: &[&str]) -> Result<ToolRegistry, ToolError> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.tools.contains_key(*n))
            .collect();
        if !missing.is_empty() {
            return Err(ToolError(format!(
                "no such tool(s): {} (registered: {})",
                missing.join(", "),
                self.names().join(", ")
            )));
        }
        Ok(ToolRegistry {
            tools: names
                .iter()
                .map(|n| (n.to_string(), self.tools[*n].clone()))
                .collect(),
        })
    }

    /// The OpenAI `tools` list.
    pub fn openai_tools(&self) -> Vec<ChatCompletionTools> {
        self.tools.values().map(|t| t.openai_tool()).collect()
    }
}
