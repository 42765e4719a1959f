//! The agent loop (the seed's `SimpleAgent`): call the model with the tools, run the tool calls
//! it makes in order, feed the results back, until it calls `finish`, replies without tool calls
//! (implicit finish), the turn limit is reached, or the LLM call fails for good.

use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::{ChatClient, Usage};
use super::coerce::{coerce_args, parse_args};
use super::tools::{args_schema, ToolDef, ToolRegistry};

/// The built-in `finish` tool's arguments (exactly the seed's).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FinishArgs {
    /// Whether the task succeeded.
    pub success: bool,
    /// The result as a JSON string (parsed when it is valid JSON).
    #[serde(default)]
    pub result: Option<String>,
    /// A one-line summary.
    #[serde(default)]
    pub summary: Option<String>,
}

/// The name of the built-in tool.
pub const FINISH: &str = "finish";

/// The `finish` tool's schema entry (always appended to the agent's tools).
pub fn finish_tool() -> ToolDef {
    ToolDef::raw(
        FINISH,
        "Finish the task. success: whether it succeeded; result: the result as a JSON string; \
         summary: one line.",
        {
            let mut s = args_schema::<FinishArgs>();
            s["required"] = json!(["success"]);
            s
        },
        |_| async { Ok(Value::Null) },
    )
}

/// One tool call as it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCallRecord {
    pub turn: usize,
    pub name: String,
    /// The arguments after repair.
    pub arguments: Value,
    /// False for unknown tools and tool errors.
    pub ok: bool,
}

/// What an agent run produced (the seed's `AgentResult`, plus token usage and a call log).
#[derive(Debug, Clone, Serialize)]
pub struct AgentResult {
    pub success: bool,
    /// The `finish` arguments, `result` parsed when it is JSON; None for an implicit finish.
    pub structured: Option<Value>,
    pub raw_text: String,
    pub turns_used: usize,
    /// Summed over every chat-completion call.
    pub usage: Usage,
    /// One entry per chat-completion call.
    pub usage_per_call: Vec<Usage>,
    pub tool_calls: Vec<ToolCallRecord>,
    #[serde(skip)]
    pub messages: Vec<ChatCompletionRequestMessage>,
}

/// An agent: a client, a model, a temperature, a turn limit and tools.
#[derive(Debug, Clone)]
pub struct AgentRunner {
    pub client: ChatClient,
    pub model: String,
    pub temperature: f32,
    pub max_turns: usize,
    pub tools: ToolRegistry,
}

fn tool_content(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl AgentRunner {
    /// Run with a system prompt, context messages (sent as user messages after the system
    /// prompt, as the seed's `build_context`) and the user message.
    pub async fn run(&self, system: &str, context: &[String], user_message: &str) -> AgentResult {
        let mut messages: Vec<ChatCompletionRequestMessage> =
            vec![ChatCompletionRequestSystemMessage::from(system).into()];
        for c in context {
            messages.push(ChatCompletionRequestUserMessage::from(c.as_str()).into());
        }
        messages.push(ChatCompletionRequestUserMessage::from(user_message).into());
        let finish = finish_tool();
        let mut schemas = self.tools.openai_tools();
        schemas.push(finish.openai_tool());
        let mut usage = Usage::default();
        let mut per_call = Vec::new();
        let mut log = Vec::new();
        let done =
            |success, structured, raw_text: String, turns, usage, per_call, log, messages| {
                AgentResult {
                    success,
                    structured,
                    raw_text,
                    turns_used: turns,
                    usage,
                    usage_per_call: per_call,
                    tool_calls: log,
                    messages,
                }
            };
        for turn in 0..self.max_turns {
            let request = CreateChatCompletionRequest {
                model: self.model.clone(),
                messages: messages.clone(),
                tools: Some(schemas.clone()),
                temperature: Some(self.temperature),
                ..Default::default()
            };
            let completion = match self.client.complete(&request).await {
                Ok(c) => c,
                Err(e) => {
                    return done(
                        false,
                        None,
                        format!("LLM call failed: {e}"),
                        turn + 1,
                        usage,
                        per_call,
                        log,
                        messages,
                    )
                }
            };
            usage.add(&completion.usage);
            per_call.push(completion.usage);
            let msg = completion.response.choices[0].message.clone();
            let calls = msg.tool_calls.clone().unwrap_or_default();
            if calls.is_empty() {
                let text = msg.content.unwrap_or_default();
                messages.push(ChatCompletionRequestAssistantMessage::from(text.as_str()).into());
                return done(true, None, text, turn + 1, usage, per_call, log, messages);
            }
            #[allow(deprecated)]
            messages.push(
                ChatCompletionRequestAssistantMessage {
                    content: msg
                        .content
                        .clone()
                        .map(ChatCompletionRequestAssistantMessageContent::Text),
                    tool_calls: Some(calls.clone()),
                    ..Default::default()
                }
                .into(),
            );
            for call in calls {
                let (id, name, raw_args) = match &call {
                    ChatCompletionMessageToolCalls::Function(f) => (
                        f.id.clone(),
                        f.function.name.clone(),
                        f.function.arguments.clone(),
                    ),
                    ChatCompletionMessageToolCalls::Custom(c) => (
                        c.id.clone(),
                        c.custom_tool.name.clone(),
                        c.custom_tool.input.clone(),
                    ),
                };
                if name == FINISH {
                    let args = coerce_args(parse_args(&raw_args), &finish.parameters);
                    let success = args
                        .get("success")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(true);
                    let mut structured = serde_json::Map::new();
                    structured.insert("success".into(), Value::Bool(success));
                    if let Some(r) = args.get("result") {
                        let parsed = match r {
                            Value::String(s) => {
                                serde_json::from_str::<Value>(s).unwrap_or(r.clone())
                            }
                            other => other.clone(),
                        };
                        structured.insert("result".into(), parsed);
                    }
                    if let Some(s) = args.get("summary") {
                        structured.insert("summary".into(), s.clone());
                    }
                    log.push(ToolCallRecord {
                        turn: turn + 1,
                        name,
                        arguments: Value::Object(args.clone()),
                        ok: true,
                    });
                    let raw = Value::Object(args).to_string();
                    return done(
                        success,
                        Some(Value::Object(structured)),
                        raw,
                        turn + 1,
                        usage,
                        per_call,
                        log,
                        messages,
                    );
                }
                let (content, args, ok) = match self.tools.get(&name) {
                    None => (
                        json!({"error": format!("Unknown tool: {name}")}).to_string(),
                        Value::Object(parse_args(&raw_args)),
                        false,
                    ),
                    Some(tool) => {
                        let args = coerce_args(parse_args(&raw_args), &tool.parameters);
                        let shown = Value::Object(args.clone());
                        match tool.call(args).await {
                            Ok(v) => (tool_content(&v), shown, true),
                            Err(e) => (json!({"error": e.0}).to_string(), shown, false),
                        }
                    }
                };
                tracing::debug!(turn, tool = %name, ok, "tool call");
                log.push(ToolCallRecord {
                    turn: turn + 1,
                    name,
                    arguments: args,
                    ok,
                });
                messages.push(
                    ChatCompletionRequestToolMessage {
                        content: content.into(),
                        tool_call_id: id,
                    }
                    .into(),
                );
            }
        }
        done(
            false,
            None,
            "max turns exhausted".into(),
            self.max_turns,
            usage,
            per_call,
            log,
            messages,
        )
    }
}
