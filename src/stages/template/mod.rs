//! Templates: an object whose file is a Jinja template (minijinja) rendered over its own
//! read (`secret`, `response`) and the other objects' files (`objects`). Pure.
//!
//! Templates come from tenants, so every render is bounded: fuel (instructions and bytes,
//! one budget shared by all templates of a Mount), a recursion limit, and a cap on the
//! output; undefined names are errors; and no message carries a value of the context.
//!
//! - this file: the engine (its settings, the fuel, the output cap, check and render);
//! - `filters.rs`: the filters of ours (`b64encode`, `b64decode`, `toyaml`, `fromjson`);
//! - `context.rs`: what a template sees (`secret`, `response`, `objects`);
//! - `error.rs`: what went wrong, named without a value of the context.

mod context;
mod error;
mod filters;

pub use context::{Context, ObjectText, context_value};
pub use error::TemplateError;

use error::{describe, secret_strings};
use minijinja::value::Value;
use minijinja::{Environment, State, UndefinedBehavior};

/// Largest template source accepted.
pub const MAX_SOURCE: usize = 64 * 1024;

/// Bounds on rendering, from `-template-fuel`, `-template-recursion-limit` and
/// `-template-max-output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel for all the templates of one Mount: about one per instruction, one per 64 bytes
    /// made or written.
    pub fuel: u64,
    /// Deepest nesting of macro calls and includes.
    pub recursion: usize,
    /// Largest rendered file, in bytes.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 100_000,
            recursion: 100,
            max_output: 1024 * 1024,
        }
    }
}

/// Checks a template's syntax, before anything is read from Vault.
pub fn check(source: &str) -> Result<(), TemplateError> {
    if source.len() > MAX_SOURCE {
        return Err(TemplateError::TooLong(source.len()));
    }
    let env = environment(&Limits::default());
    env.template_from_str(source)
        .map(|_| ())
        .map_err(|e| describe(&e, source, &Value::UNDEFINED, &[]))
}

/// Fuel left for the next template of a Mount.
pub struct Fuel(pub u64);

/// Renders `source` over `ctx`, spending from `fuel`.
pub fn render(
    source: &str,
    ctx: &Context<'_>,
    limits: &Limits,
    fuel: &mut Fuel,
) -> Result<Vec<u8>, TemplateError> {
    if source.len() > MAX_SOURCE {
        return Err(TemplateError::TooLong(source.len()));
    }
    let root = context_value(ctx);
    let secrets = secret_strings(&root);
    let mut env = environment(limits);
    env.set_fuel(Some(fuel.0.max(1)));
    let template = env
        .template_from_str(source)
        .map_err(|e| describe(&e, source, &root, &secrets))?;
    let mut out = Capped {
        buf: Vec::new(),
        max: limits.max_output,
        exceeded: false,
    };
    let outcome = template
        .render_captured_to(root.clone(), &mut out)
        .map(|captured| captured.state().fuel_levels().map(|(_, left)| left));
    match outcome {
        Ok(left) => {
            fuel.0 = left.unwrap_or(0);
            Ok(out.buf)
        }
        Err(_) if out.exceeded => Err(TemplateError::Limit {
            at: String::new(),
            what: "writes more than -template-max-output bytes",
            flag: "-template-max-output",
        }),
        Err(e) => Err(describe(&e, source, &root, &secrets)),
    }
}

/// The engine with our settings and filters. Undefined names fail; no auto-escaping (the
/// output is a file, not HTML); a trailing newline is kept, as a file should have it.
fn environment(limits: &Limits) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_recursion_limit(limits.recursion);
    env.set_debug(false);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(limits.fuel.max(1)));
    filters::add(&mut env);
    env
}

/// Charges fuel for work a filter of ours does on `bytes` bytes.
pub(super) fn charge(state: &State, bytes: usize) -> Result<(), minijinja::Error> {
    state.consume_fuel((bytes / 64) as u64 + 1)
}

/// Output that fails once it would pass `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
    exceeded: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            self.exceeded = true;
            return Err(std::io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
