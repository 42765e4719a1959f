//! A scripted OpenAI-compatible chat-completions server: each request's JSON body goes to a
//! script (a function of the request: the agent's messages and tools so far) that answers with
//! tool calls or `finish`, as a model would. On 127.0.0.1 and a free port, std threads, one
//! request per connection. [`ChatServer`](super::ChatServer) is the one-reply version.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::read_http_request;

/// The server; `requests` holds every request body, in order.
pub struct ScriptedChat {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl ScriptedChat {
    pub fn start(script: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        Self::recording(Arc::new(Mutex::new(Vec::new())), script)
    }

    /// [`ScriptedChat::start`], keeping the request bodies in `requests`.
    pub fn recording(
        requests: Arc<Mutex<Vec<Value>>>,
        script: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = requests.clone();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let (seen, script) = (seen.clone(), script.clone());
                std::thread::spawn(move || {
                    let Some((_, body)) = read_http_request(&mut s) else {
                        return;
                    };
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let answer = script(&req).to_string();
                    seen.lock().unwrap().push(req);
                    let _ = write!(
                        s,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                });
            }
        });
        ScriptedChat {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }
}

/// A completion calling these tools (name, arguments).
pub fn tool_calls(calls: &[(&str, Value)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            json!({"id": format!("call_{i}"), "type": "function",
                   "function": {"name": name, "arguments": args.to_string()}})
        })
        .collect();
    json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "scripted",
        "choices": [{"index": 0, "finish_reason": "tool_calls",
                     "message": {"role": "assistant", "content": null, "tool_calls": calls}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    })
}

/// A completion calling `finish`.
pub fn finish(success: bool, result: Value, summary: &str) -> Value {
    tool_calls(&[(
        "finish",
        json!({"success": success, "result": result.to_string(), "summary": summary}),
    )])
}

/// How many times the model has answered so far in this request's conversation.
pub fn turns(req: &Value) -> usize {
    req["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
        .unwrap_or(0)
}

/// The tool results of the request's conversation, parsed as JSON, in order.
pub fn tool_results(req: &Value) -> Vec<Value> {
    req["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            let c = m["content"].as_str().unwrap_or_default();
            serde_json::from_str(c).unwrap_or_else(|_| Value::String(c.to_string()))
        })
        .collect()
}
