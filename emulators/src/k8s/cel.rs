//! The CEL engine behind admission policies ([`super::admission`]) and CRD validation rules
//! ([`super::schema`]): cel-rust (the `cel` crate) with Kubernetes' conventions. JSON objects
//! become CEL maps (integers `int`, as Kubernetes' int64 fields are), the optional syntax
//! (`a.?b`) and the strings, lists and math extensions are on, as in Kubernetes' CEL
//! environment, and a policy's `variables` are evaluated lazily, on first use, and once:
//! Kubernetes does the same, so a variable that would fail is harmless unless it is used.
//!
//! `duration()` reads Go duration strings as Kubernetes does (time.ParseDuration): cel-rust
//! alone accepts trailing garbage (`'1hx'`) and exponents and lacks `µs`, so a macro routes
//! the argument through a strict Go parser first ([`go_duration_nanos`]).
//!
//! Not emulated: Kubernetes' own libraries (`quantity`, `url`, `ip`, `cidr`, `authorizer`,
//! `format`), the cost budget, and typed schemas, except a Secret's `data`, which
//! admission hands over as `bytes` as the API server does ([`super::admission`]).

use std::sync::{Arc, Mutex, OnceLock};

use cel::common::ast::{CallExpr, Expr as Ast};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::extractors::Arguments;
use cel::parser::Macro;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;

/// The shared environment: compiling with it and evaluating with it must go together.
pub(crate) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Each extension declares disjoint names; a failure would be a cel-rust bug, and the
        // environment is still usable without that extension.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        let _ = env.add_extension(cel::extensions::math);
        // duration(x) becomes duration(GO_DURATION(x)): see the module docs.
        let _ = env.add_macro(Macro::global("duration", 1, |helper, _target, args| {
            let Some(arg) = args.pop() else {
                return Ok(None);
            };
            let checked = helper.next_expr(Ast::Call(CallExpr {
                func_name: GO_DURATION.to_string(),
                target: None,
                args: vec![arg],
            }));
            Ok(Some(helper.next_expr(Ast::Call(CallExpr {
                func_name: "duration".to_string(),
                target: None,
                args: vec![checked],
            }))))
        }));
        Arc::new(env)
    })
    .clone()
}

/// The function the `duration` macro inserts; not a name an expression can write.
const GO_DURATION: &str = "@goDuration";

/// Nanoseconds of a Go duration string, as time.ParseDuration reads it: an optional sign,
/// then "0" or one or more decimal numbers (a fraction allowed) each with a unit among
/// ns, us, µs, μs, ms, s, m, h; overflowing int64 nanoseconds is an error.
pub(crate) fn go_duration_nanos(s: &str) -> Result<i64, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration \"{s}\"")),
            other => {
                return Err(format!(
                    "time: unknown unit \"{other}\" in duration \"{s}\""
                ))
            }
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        let mut frac: i128 = 0;
        let mut div: i128 = 1;
        // Digits beyond nanosecond precision of the largest unit cannot change the result.
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + i128::from(d - b'0');
            div *= 10;
        }
        total = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac * scale / div))
            .and_then(|v| total.checked_add(v))
            .filter(|t| *t <= i128::from(i64::MAX) + 1)
            .ok_or_else(bad)?;
        rest = after;
    }
    let signed = if neg { -total } else { total };
    i64::try_from(signed).map_err(|_| bad())
}

/// The strict front of `duration(string)`; other arguments pass through unchanged.
fn go_duration(Arguments(args): Arguments) -> Result<Cel, ExecutionError> {
    match args.first() {
        Some(Cel::String(s)) => go_duration_nanos(s)
            .map(|n| Cel::from(format!("{n}ns")))
            .map_err(|e| ExecutionError::function_error("duration", e)),
        Some(other) => Ok(other.clone()),
        None => Err(ExecutionError::invalid_argument_count(1, 0)),
    }
}

/// One compiled expression, with its source for messages.
#[derive(Debug)]
pub(crate) struct Expr {
    pub source: String,
    program: Program,
}

// === impl Expr ===

impl Expr {
    pub(crate) fn compile(source: &str) -> Result<Expr, String> {
        let program = env()
            .compile(source)
            .map_err(|e| format!("compilation failed: {e}"))?;
        Ok(Expr {
            source: source.to_string(),
            program,
        })
    }

    /// Whether the expression names this variable (`oldSelf`, `object`...).
    pub(crate) fn uses(&self, variable: &str) -> bool {
        self.program.references().has_variable(variable)
    }
}

/// A JSON value as CEL sees it: integers as `int` (`uint` only past i64), other numbers as
/// `double`, objects as maps with string keys.
pub(crate) fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cel::Int(i),
            (None, Some(u)) => Cel::UInt(u),
            _ => Cel::Float(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: std::collections::HashMap<String, Cel> =
                m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            Cel::from(map)
        }
    }
}

/// One evaluation of a set of expressions against the same bindings: the top-level
/// variables (`object`, `request`, `self`...) and the lazily computed `variables.<name>`.
///
/// Bindings and variables are converted to cel's values once, and every expression
/// borrows them through [`Scope`]: converting `object` (a whole Secret, with its data)
/// for each expression of a policy was most of the emulator's CPU per write, and serialised
/// the writes behind the store's lock.
pub(crate) struct Evaluation<'a> {
    /// The bindings that converted; one that did not reads as undeclared.
    bindings: Vec<(&'static str, Box<dyn Val>)>,
    variables: &'a [(String, Expr)],
    /// Each variable's result once computed.
    cache: Vec<OnceLock<Result<Box<dyn Val>, String>>>,
    /// The first variable that failed, for the message of the expression that used it.
    failed: Mutex<Option<String>>,
}

// === impl Evaluation ===

impl<'a> Evaluation<'a> {
    pub(crate) fn new(bindings: Vec<(&'static str, Cel)>, variables: &'a [(String, Expr)]) -> Self {
        Evaluation {
            bindings: bindings
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.try_into().ok()?)))
                .collect(),
            cache: variables.iter().map(|_| OnceLock::new()).collect(),
            variables,
            failed: Mutex::new(None),
        }
    }

    /// Evaluates an expression, which may use every variable.
    pub(crate) fn eval(&self, e: &Expr) -> Result<Cel, String> {
        self.eval_with(e, self.variables.len())
    }

    /// Evaluates to a boolean; anything else is an error, as in Kubernetes.
    pub(crate) fn eval_bool(&self, e: &Expr) -> Result<bool, String> {
        match self.eval(e)? {
            Cel::Bool(b) => Ok(b),
            other => Err(format!("expected a bool, got {}", other.type_of_name())),
        }
    }

    /// Evaluates with only the first `visible` variables in scope (a variable sees only
    /// those declared before it, so nothing can recurse).
    fn eval_with(&self, e: &Expr, visible: usize) -> Result<Cel, String> {
        let scope = Scope {
            eval: self,
            visible,
        };
        let mut ctx = Context::with_env(env());
        // Cannot clash: the name is not one an expression or an overload can have.
        let _ = ctx.add_function(GO_DURATION, go_duration);
        ctx.set_variable_resolver(&scope);
        e.program.execute(&ctx).map_err(|err| {
            let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            match (&err, failed.as_ref()) {
                // A failed variable reads as undeclared; say why instead.
                (cel::ExecutionError::UndeclaredReference(name), Some(why))
                    if name.as_str() == "variables" =>
                {
                    why.clone()
                }
                _ => err.to_string(),
            }
        })
    }

    /// Variable `idx`, computed on first use. Only earlier variables are visible to it,
    /// so computing it never waits on its own cell.
    fn variable(&self, idx: usize) -> Result<&dyn Val, String> {
        let cell = self.cache.get(idx).ok_or("no such variable")?;
        let result = cell.get_or_init(|| {
            let (name, expr) = &self.variables[idx];
            let result = self
                .eval_with(expr, idx)
                .map_err(|e| format!("composited variable \"{name}\" fails to evaluate: {e}"))
                .and_then(|v| {
                    v.try_into()
                        .map_err(|_| format!("composited variable \"{name}\" has no CEL value"))
                });
            if let Err(e) = &result {
                self.failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| e.clone());
            }
            result
        });
        result.as_deref().map_err(String::clone)
    }
}

/// Serves the bindings and `variables.<name>` to one expression, borrowed.
struct Scope<'e, 'a> {
    eval: &'e Evaluation<'a>,
    visible: usize,
}

impl VariableResolver for Scope<'_, '_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        let Some(var) = name.strip_prefix("variables.") else {
            let (_, value) = self.eval.bindings.iter().find(|(n, _)| *n == name)?;
            return Some(CowVal::Borrowed(value.as_ref()));
        };
        let idx = self.eval.variables[..self.visible]
            .iter()
            .position(|(n, _)| n == var)?;
        self.eval.variable(idx).ok().map(CowVal::Borrowed)
    }
}

/// The name of a value's CEL type, for messages.
trait TypeName {
    fn type_of_name(&self) -> String;
}

impl TypeName for Cel {
    fn type_of_name(&self) -> String {
        self.type_of().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, object: Value) -> Result<Cel, String> {
        let e = Expr::compile(src)?;
        Evaluation::new(vec![("object", to_cel(&object))], &[]).eval(&e)
    }

    #[test]
    fn json_objects_read_like_kubernetes_objects() {
        let o = json!({"metadata": {"labels": {"a.b/c": "x"}}, "n": 3, "l": [1, {"k": true}]});
        assert_eq!(
            eval("has(object.metadata.labels)", o.clone()),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("has(object.metadata.annotations)", o.clone()),
            Ok(Cel::Bool(false))
        );
        assert_eq!(
            eval(
                "object.metadata.labels['a.b/c'] == 'x' && object.n == 3",
                o.clone()
            ),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("object.l == [1, {'k': true}]", o.clone()),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("object.?nope.orValue('d')", o.clone()),
            Ok(Cel::from("d"))
        );
        assert!(eval("object.nope", o).is_err());
    }

    #[test]
    fn duration_reads_go_duration_strings_strictly() {
        for (s, nanos) in [
            ("0", 0),
            ("1h30m", 5_400_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-1.5s", -1_500_000_000),
            ("+2m", 120_000_000_000),
            ("300ms", 300_000_000),
            ("1\u{b5}s", 1_000),
            ("1us2ns", 1_002),
            (".5s", 500_000_000),
        ] {
            assert_eq!(go_duration_nanos(s), Ok(nanos), "{s}");
        }
        for s in [
            "",
            "1",
            "1hx",
            "1e3s",
            "1d",
            "-",
            ".s",
            "9999999999h",
            "1h 2m",
        ] {
            assert!(go_duration_nanos(s).is_err(), "{s}");
        }
        let t = |src: &str| eval(src, json!({}));
        assert_eq!(
            t("duration('1h30m') == duration('90m')"),
            Ok(Cel::Bool(true))
        );
        assert_eq!(t("duration('1.5h') > duration('89m')"), Ok(Cel::Bool(true)));
        assert!(t("duration('1hx') > duration('1s')").is_err());
        assert!(t("duration('5 minutes') > duration('1s')").is_err());
    }

    #[test]
    fn variables_are_lazy_and_see_only_earlier_ones() {
        let vars = vec![
            (
                "boom".to_string(),
                Expr::compile("object.missing.field").unwrap(),
            ),
            ("two".to_string(), Expr::compile("1 + 1").unwrap()),
            (
                "four".to_string(),
                Expr::compile("variables.two * 2").unwrap(),
            ),
            (
                "early".to_string(),
                Expr::compile("variables.late").unwrap(),
            ),
            ("late".to_string(), Expr::compile("1").unwrap()),
        ];
        let ev = Evaluation::new(vec![("object", to_cel(&json!({})))], &vars);
        // `boom` is never used, so it never fails anything.
        assert_eq!(
            ev.eval(&Expr::compile("variables.four == 4").unwrap()),
            Ok(Cel::Bool(true))
        );
        let e = ev
            .eval(&Expr::compile("variables.boom").unwrap())
            .unwrap_err();
        assert!(e.contains("composited variable \"boom\""), "{e}");
        assert!(ev.eval(&Expr::compile("variables.early").unwrap()).is_err());
    }
}
