use super::*;
use crate::stages::answer::SecretResponse;
use std::collections::BTreeMap;

fn answer(json: &str) -> SecretResponse {
    SecretResponse::parse(json.as_bytes()).unwrap()
}

fn run(source: &str, a: Option<&SecretResponse>) -> Result<String, TemplateError> {
    let objects = BTreeMap::new();
    run_with(source, a, &objects, &Limits::default())
}

fn run_with(
    source: &str,
    a: Option<&SecretResponse>,
    objects: &BTreeMap<String, ObjectText>,
    limits: &Limits,
) -> Result<String, TemplateError> {
    let ctx = Context { answer: a, objects };
    let mut fuel = Fuel(limits.fuel);
    render(source, &ctx, limits, &mut fuel).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn secret_response_and_objects() {
    let kv2 = answer(
        r#"{"lease_duration":0,"data":{"data":{"user":"u","n":3},"metadata":{"version":2}}}"#,
    );
    assert_eq!(
        run("{{ secret.user }}:{{ secret.n + 1 }}", Some(&kv2)).unwrap(),
        "u:4"
    );
    assert_eq!(
        run("{{ response.data.metadata.version }}", Some(&kv2)).unwrap(),
        "2"
    );
    let kv1 = answer(r#"{"data":{"user":"u"}}"#);
    assert_eq!(run("{{ secret.user }}", Some(&kv1)).unwrap(), "u");
    let mut objects = BTreeMap::new();
    objects.insert("a".to_string(), ObjectText::File(b"one".to_vec()));
    let mut dir = BTreeMap::new();
    dir.insert("k".to_string(), b"two".to_vec());
    objects.insert("d".to_string(), ObjectText::Dir(dir));
    assert_eq!(
        run_with(
            "{{ objects.a }}-{{ objects.d.k }}-{{ objects['a'] }}",
            None,
            &objects,
            &Limits::default()
        )
        .unwrap(),
        "one-two-one"
    );
}

#[test]
fn filters_for_secrets() {
    let a = answer(r#"{"data":{"p":"a b&c","b":"aGVsbG8=","j":"{\"x\":[1,2]}","m":{"k":"v"}}}"#);
    assert_eq!(
        run("{{ secret.b | b64decode }}", Some(&a)).unwrap(),
        "hello"
    );
    assert_eq!(
        run("{{ 'hello' | b64encode }}", Some(&a)).unwrap(),
        "aGVsbG8="
    );
    assert_eq!(
        run("{{ (secret.j | fromjson).x[1] }}", Some(&a)).unwrap(),
        "2"
    );
    assert_eq!(run("{{ secret.m | toyaml }}", Some(&a)).unwrap(), "k: v\n");
    assert_eq!(
        run("{{ secret.m | tojson }}", Some(&a)).unwrap(),
        r#"{"k": "v"}"#
    );
    assert_eq!(
        run("{{ secret.p | urlencode }}", Some(&a)).unwrap(),
        "a%20b%26c"
    );
    assert_eq!(
        run("{{ secret.nope | default('d') }}", Some(&a)).unwrap(),
        "d"
    );
    assert_eq!(run("{{ '  x ' | trim }}", Some(&a)).unwrap(), "x");
    assert_eq!(
        run("line\n", Some(&a)).unwrap(),
        "line\n",
        "trailing newline kept"
    );
}

#[test]
fn unknown_filters_are_invalid_argument() {
    let e = run("{{ 'x' | nosuchfilter }}", None).unwrap_err();
    assert!(matches!(e, TemplateError::Unknown { .. }), "{e}");
    assert!(e.to_string().contains("nosuchfilter"), "{e}");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = check("ok\n  {{ secret.x }\n").unwrap_err();
    assert!(matches!(e, TemplateError::Syntax { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("line 2"), "{msg}");
    assert!(msg.contains("column"), "{msg}");
    assert!(check(&"x".repeat(MAX_SOURCE + 1)).is_err());
    // Deeply nested expressions are refused by the parser, not a stack overflow.
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    assert!(check(&deep).is_err());
}

#[test]
fn undefined_names_the_missing_step_and_what_exists() {
    let a = answer(r#"{"data":{"data":{"password":"hunter2-value","db":{"host":"h"}}}}"#);
    let e = run("{{ secret.pasword }}", Some(&a)).unwrap_err();
    assert!(matches!(e, TemplateError::Undefined { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("\"pasword\"") && msg.contains("\"password\""),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    let e = run("{{ secret.db.port }}", Some(&a))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"port\"") && e.contains("\"host\"") && e.contains("secret.db"),
        "{e}"
    );
    let e = run("{{ secrets.x }}", Some(&a)).unwrap_err().to_string();
    assert!(
        e.contains("\"secrets\"") && e.contains("\"secret\"") && e.contains("\"objects\""),
        "{e}"
    );
    // Without a read there is no secret.
    let e = run("{{ secret.x }}", None).unwrap_err().to_string();
    assert!(e.contains("\"secret\"") && e.contains("\"objects\""), "{e}");
}

#[test]
fn values_never_reach_messages() {
    let a = answer(r#"{"data":{"n":"not-a-number-secret"}}"#);
    for t in [
        "{{ secret.n + 1 }}",
        "{{ secret.n | int + [] }}",
        "{{ secret.n | b64decode }}",
        "{{ secret.n | fromjson }}",
        "{{ secret.n[5:] + 1 }}",
    ] {
        let e = run(t, Some(&a)).unwrap_err().to_string();
        assert!(
            !e.contains("not-a-number-secret") && !e.contains("number-secret"),
            "{t}: {e}"
        );
    }
}

#[test]
fn hostile_templates_stop_at_their_limits() {
    let limits = Limits::default();
    for (t, flag) in [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "-template-fuel",
        ),
        ("{{ 'x' * 1000000000 }}", "-template-fuel"),
        (
            "{% for i in range(1000) %}{{ 'x' * 100000 }}{% endfor %}",
            "-template-",
        ),
        (
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "-template-",
        ),
    ] {
        let started = std::time::Instant::now();
        let e = run_with(t, None, &BTreeMap::new(), &limits).unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{t} took {:?}",
            started.elapsed()
        );
        assert!(matches!(e, TemplateError::Limit { .. }), "{t}: {e}");
        assert!(e.to_string().contains(flag), "{t}: {e}");
    }
    let small = Limits {
        max_output: 1024,
        ..Limits::default()
    };
    let e = run_with("{{ 'x' * 2000 }}", None, &BTreeMap::new(), &small).unwrap_err();
    assert!(e.to_string().contains("-template-max-output"), "{e}");
    let shallow = Limits {
        recursion: 3,
        ..Limits::default()
    };
    let t = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(10) }}";
    let e = run_with(t, None, &BTreeMap::new(), &shallow).unwrap_err();
    assert!(e.to_string().contains("-template-recursion-limit"), "{e}");
    let ok = run_with(t, None, &BTreeMap::new(), &limits);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn fuel_is_shared_by_the_templates_of_a_mount() {
    let limits = Limits {
        fuel: 2000,
        ..Limits::default()
    };
    let objects = BTreeMap::new();
    let ctx = Context {
        answer: None,
        objects: &objects,
    };
    let mut fuel = Fuel(limits.fuel);
    let t = "{% for i in range(300) %}{{ i }}{% endfor %}";
    assert!(render(t, &ctx, &limits, &mut fuel).is_ok());
    assert!(fuel.0 < 2000);
    let mut spent = 0;
    while render(t, &ctx, &limits, &mut fuel).is_ok() {
        spent += 1;
        assert!(spent < 100, "fuel never ran out");
    }
}

mod properties {
    use super::*;
    use crate::stages::answer::strategies::json;
    use proptest::prelude::*;

    proptest! {
        /// Any answer becomes a context whose `secret` round-trips through tojson to the
        /// same JSON, and whose every key is reachable by name.
        #[test]
        fn context_reflects_the_answer(data in prop::collection::btree_map("[a-z]{1,6}", json(), 0..6)) {
            // A map under "data" is KV v2's inner data, which `secret` is then (tested above).
            prop_assume!(!data.get("data").is_some_and(|d| d.is_object()));
            let map: serde_json::Map<String, serde_json::Value> = data.clone().into_iter().collect();
            let a = SecretResponse { data: Some(map.clone()), ..Default::default() };
            let objects = BTreeMap::new();
            let ctx = Context { answer: Some(&a), objects: &objects };
            let root = context_value(&ctx);
            let secret = root.get_attr("secret").unwrap();
            for (k, v) in &data {
                let got = secret.get_attr(k).unwrap();
                prop_assert!(!got.is_undefined());
                let back: serde_json::Value = serde_json::to_value(&got).unwrap();
                match (v, &back) {
                    (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
                        prop_assert!((a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= a.as_f64().unwrap().abs() * 1e-12);
                    }
                    _ if v.to_string().contains('.') || v.to_string().contains('e') => {}
                    _ => prop_assert_eq!(v, &back),
                }
            }
        }

        /// Whatever a template says over whatever data, rendering ends with output or an
        /// error (never a panic), and an error never shows a value of the data.
        #[test]
        fn any_template_is_bounded_and_quiet(
            source in "[{}%a-z .|()\\[\\]'0-9+*~-]{0,60}",
            value in "[A-Za-z]{12}",
        ) {
            let a = SecretResponse {
                data: Some(serde_json::json!({"k": value.clone(), "n": 1}).as_object().unwrap().clone()),
                ..Default::default()
            };
            let limits = Limits { fuel: 20_000, ..Limits::default() };
            match run_with(&source, Some(&a), &BTreeMap::new(), &limits) {
                Ok(out) => prop_assert!(out.len() <= limits.max_output),
                Err(e) => prop_assert!(!e.to_string().contains(&value)),
            }
        }
    }
}
