//! The glue behind the export macros (not public API).

use serde::Serialize;

use crate::__bindings::orca::plugin::types as wit;
use crate::{Context, Error, Phase};

/// A step or compensation function, with its result already JSON.
pub type StepFn = fn(Context) -> Result<String, Error>;
/// A condition function.
pub type ConditionFn = fn(Context) -> Result<bool, Error>;

/// Runs a user step function and serializes its result.
pub fn call_step<T, E>(
    f: impl FnOnce(Context) -> Result<T, E>,
    ctx: Context,
) -> Result<String, Error>
where
    T: Serialize,
    E: Into<Error>,
{
    let value = f(ctx).map_err(Into::into)?;
    to_json(&value).map_err(|e| {
        Error::fatal(format!("cannot serialize the step's result as JSON: {e}"))
            .with_code("bad_result")
    })
}

/// Serializes `value` into a buffer of exactly the right size: measuring first costs a second
/// pass, but a growing buffer would need up to three times the result's size at once, and a
/// component's memory is capped.
fn to_json<T: Serialize>(value: &T) -> serde_json::Result<String> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value)?;
    let mut out = Vec::new();
    if out.try_reserve_exact(count.0).is_err() {
        return Err(serde::ser::Error::custom(format!(
            "no memory for a {}-byte result",
            count.0
        )));
    }
    serde_json::to_writer(&mut out, value)?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// Runs a user condition function.
pub fn call_condition<E: Into<Error>>(
    f: impl FnOnce(Context) -> Result<bool, E>,
    ctx: Context,
) -> Result<bool, Error> {
    f(ctx).map_err(Into::into)
}

fn not_a(what: &str, has: &str, code: &str) -> Error {
    Error::fatal(format!("this component is not {what} (it {has})")).with_code(code)
}

fn exports(
    step: Option<StepFn>,
    compensate: Option<StepFn>,
    condition: Option<ConditionFn>,
) -> &'static str {
    match (step.is_some(), compensate.is_some(), condition.is_some()) {
        (true, _, true) => "is a step and a condition",
        (true, _, false) => "is a step",
        (false, true, true) => "is a compensation and a condition",
        (false, true, false) => "only compensates",
        (false, false, _) => "is only a condition",
    }
}

/// What the `step.run` export does: a `compensate` call goes to the compensation function if
/// there is one, else to the step function (which can check [`Context::phase`]).
pub fn dispatch_run(
    ctx: wit::Context,
    step: Option<StepFn>,
    compensate: Option<StepFn>,
    condition: Option<ConditionFn>,
) -> Result<String, wit::Error> {
    let ctx = Context::from(ctx);
    let has = exports(step, compensate, condition);
    let f = match ctx.phase() {
        Phase::Compensate => compensate
            .or(step)
            .ok_or_else(|| not_a("a compensation", has, "not_a_compensation")),
        Phase::Run => step.ok_or_else(|| not_a("a step", has, "not_a_step")),
    };
    f.and_then(|f| f(ctx)).map_err(Into::into)
}

/// What the `condition.evaluate` export does.
pub fn dispatch_evaluate(
    ctx: wit::Context,
    step: Option<StepFn>,
    compensate: Option<StepFn>,
    condition: Option<ConditionFn>,
) -> Result<bool, wit::Error> {
    let has = exports(step, compensate, condition);
    match condition {
        Some(f) => f(Context::from(ctx)).map_err(Into::into),
        None => Err(not_a("a condition", has, "not_a_condition").into()),
    }
}

/// Exports a component. See the crate docs.
#[doc(hidden)]
#[macro_export]
macro_rules! __orca_export {
    // Collect `key = function` pairs.
    (@parse [$($s:tt)*] [$($cp:tt)*] [$($c:tt)*] step = $f:path, $($rest:tt)*) => {
        $crate::__orca_export!(@parse [$f] [$($cp)*] [$($c)*] $($rest)*);
    };
    (@parse [$($s:tt)*] [$($cp:tt)*] [$($c:tt)*] compensate = $f:path, $($rest:tt)*) => {
        $crate::__orca_export!(@parse [$($s)*] [$f] [$($c)*] $($rest)*);
    };
    (@parse [$($s:tt)*] [$($cp:tt)*] [$($c:tt)*] condition = $f:path, $($rest:tt)*) => {
        $crate::__orca_export!(@parse [$($s)*] [$($cp)*] [$f] $($rest)*);
    };
    (@parse [$($s:tt)*] [$($cp:tt)*] [$($c:tt)*] $key:ident = $($rest:tt)*) => {
        ::std::compile_error!(::std::concat!(
            "orca_sdk::export_component!: unknown key `", ::std::stringify!($key),
            "` (expected `step`, `compensate` or `condition`)"
        ));
    };
    (@parse [] [] []) => {
        ::std::compile_error!("orca_sdk::export_component!: give at least one of `step = f`, `compensate = f`, `condition = f`");
    };
    (@parse [$($s:path)?] [$($cp:path)?] [$($c:path)?]) => {
        const _: () = {
            use $crate::__bindings::orca::plugin::types as __orca_wit;

            const __ORCA_STEP: ::std::option::Option<$crate::__private::StepFn> =
                $crate::__orca_export!(@step $($s)?);
            const __ORCA_COMPENSATE: ::std::option::Option<$crate::__private::StepFn> =
                $crate::__orca_export!(@step $($cp)?);
            const __ORCA_CONDITION: ::std::option::Option<$crate::__private::ConditionFn> =
                $crate::__orca_export!(@condition $($c)?);

            struct __OrcaComponent;

            impl $crate::__bindings::exports::orca::plugin::step::Guest for __OrcaComponent {
                fn run(context: __orca_wit::Context) -> ::std::result::Result<::std::string::String, __orca_wit::Error> {
                    $crate::__private::dispatch_run(context, __ORCA_STEP, __ORCA_COMPENSATE, __ORCA_CONDITION)
                }
            }

            impl $crate::__bindings::exports::orca::plugin::condition::Guest for __OrcaComponent {
                fn evaluate(context: __orca_wit::Context) -> ::std::result::Result<bool, __orca_wit::Error> {
                    $crate::__private::dispatch_evaluate(context, __ORCA_STEP, __ORCA_COMPENSATE, __ORCA_CONDITION)
                }
            }

            $crate::__bindings::__orca_export_plugin!(__OrcaComponent with_types_in $crate::__bindings);
        };
    };
    (@step) => { ::std::option::Option::None };
    (@step $f:path) => {
        ::std::option::Option::Some({
            fn __orca_step(ctx: $crate::Context) -> ::std::result::Result<::std::string::String, $crate::Error> {
                $crate::__private::call_step($f, ctx)
            }
            __orca_step as $crate::__private::StepFn
        })
    };
    (@condition) => { ::std::option::Option::None };
    (@condition $f:path) => {
        ::std::option::Option::Some({
            fn __orca_condition(ctx: $crate::Context) -> ::std::result::Result<bool, $crate::Error> {
                $crate::__private::call_condition($f, ctx)
            }
            __orca_condition as $crate::__private::ConditionFn
        })
    };
}

/// Exports `f` as the component's step (and compensation): `fn f(ctx: Context) ->
/// Result<impl Serialize, E>` where `E: Into<Error>`. A compensation call (`ctx.phase() ==
/// Phase::Compensate`) reaches `f` too. The component's condition export answers with a fatal
/// error, code `not_a_condition`.
#[macro_export]
macro_rules! export_step {
    ($f:path $(,)?) => { $crate::__orca_export!(@parse [] [] [] step = $f,); };
}

/// Exports `f` as the component's compensation only: `fn f(ctx: Context) -> Result<impl
/// Serialize, E>`. Called in phase `run` (as a step), the component answers with a fatal
/// error, code `not_a_step`; its condition export answers code `not_a_condition`.
#[macro_export]
macro_rules! export_compensation {
    ($f:path $(,)?) => { $crate::__orca_export!(@parse [] [] [] compensate = $f,); };
}

/// Exports `f` as the component's condition: `fn f(ctx: Context) -> Result<bool, E>`. The
/// component's step export answers with a fatal error, code `not_a_step` (or
/// `not_a_compensation`).
#[macro_export]
macro_rules! export_condition {
    ($f:path $(,)?) => { $crate::__orca_export!(@parse [] [] [] condition = $f,); };
}

/// Exports any combination of a step, a compensation and a condition from one component:
/// `export_component!(step = f, compensate = h, condition = g)` (each key optional, at least
/// one, in any order). Without `compensate`, compensation calls go to the step function.
#[macro_export]
macro_rules! export_component {
    ($($key:ident = $f:path),+ $(,)?) => { $crate::__orca_export!(@parse [] [] [] $($key = $f,)+); };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wit_ctx(phase: wit::Phase) -> wit::Context {
        wit::Context {
            execution_id: "e".into(),
            workflow: "w".into(),
            step: "s".into(),
            phase,
            attempt: 1,
            input: r#"{"amount": 5}"#.into(),
            results: "{}".into(),
            config: "{}".into(),
        }
    }

    fn step(ctx: Context) -> Result<String, Error> {
        call_step(
            |c: Context| Ok::<_, Error>(serde_json::json!({"phase": c.phase().as_str()})),
            ctx,
        )
    }
    fn comp(ctx: Context) -> Result<String, Error> {
        call_step(|_| Ok::<_, Error>("undone"), ctx)
    }
    fn cond(ctx: Context) -> Result<bool, Error> {
        call_condition(
            |c: Context| Ok::<_, Error>(c.input::<serde_json::Value>()?["amount"] == 5),
            ctx,
        )
    }

    #[test]
    fn dispatch() {
        use wit::Phase::{Compensate, Run};
        assert_eq!(
            dispatch_run(wit_ctx(Run), Some(step), None, None).unwrap(),
            r#"{"phase":"run"}"#
        );
        assert_eq!(
            dispatch_run(wit_ctx(Compensate), Some(step), None, None).unwrap(),
            r#"{"phase":"compensate"}"#
        );
        assert_eq!(
            dispatch_run(wit_ctx(Compensate), Some(step), Some(comp), None).unwrap(),
            r#""undone""#
        );
        let e = dispatch_run(wit_ctx(Run), None, Some(comp), None).unwrap_err();
        assert_eq!(
            e.message,
            "this component is not a step (it only compensates)"
        );
        assert_eq!(e.code.as_deref(), Some("not_a_step"));
        assert!(!e.retryable);
        let e = dispatch_evaluate(wit_ctx(Run), Some(step), None, None).unwrap_err();
        assert_eq!(
            e.message,
            "this component is not a condition (it is a step)"
        );
        assert_eq!(e.code.as_deref(), Some("not_a_condition"));
        let e = dispatch_run(wit_ctx(Compensate), None, None, Some(cond)).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("not_a_compensation"));
        assert!(dispatch_evaluate(wit_ctx(Run), None, None, Some(cond)).unwrap());
    }

    #[test]
    fn json_is_exact() {
        let v = serde_json::json!({"a": [1, "é", null], "b": {"c": true}});
        let text = to_json(&v).unwrap();
        assert_eq!(text, serde_json::to_string(&v).unwrap());
        assert_eq!(text.capacity(), text.len());
    }

    #[test]
    fn user_errors_pass_through() {
        fn failing(ctx: Context) -> Result<String, Error> {
            call_step(
                |_| Err::<(), _>(Error::retryable("busy").with_code("busy")),
                ctx,
            )
        }
        let e = dispatch_run(wit_ctx(wit::Phase::Run), Some(failing), None, None).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.retryable, e.code.as_deref()),
            ("busy", true, Some("busy"))
        );
    }
}
