//! Template objects end to end: over their own read (`secret`, `response`) and the other
//! objects' files, on KV v1 and v2; filters; undefined names and syntax errors named without
//! a value; hostile templates bounded in time, memory and output while other pods mount;
//! the limits set by flags; combinations refused before Vault is called.

mod common;

use common::features::*;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_over_two_kv_paths_and_its_version() {
    let e = env().await;
    e.bao
        .write("secret/data/one", json!({"data": {"user": "alice"}}))
        .await;
    e.bao.write("kv/two", json!({"pass": "pw-1"})).await;
    let objects = r#"
- {objectName: user, secretPath: secret/data/one, secretKey: user}
- {objectName: pass, secretPath: kv/two, secretKey: pass}
- objectName: conn
  template: "{{ objects.user }}/{{ objects.pass }}"
- objectName: own
  secretPath: secret/data/one
  filePermission: 0600
  template: "{{ secret.user }}:{{ objects.pass }}"
"#;
    let first = e.mount(objects).await.unwrap();
    assert_eq!(paths(&first), ["conn", "own", "pass", "user"]);
    assert_eq!(version_ids(&first), ["conn", "own", "pass", "user"]);
    assert_eq!(file_str(&first, "conn"), "alice/pw-1");
    assert_eq!(file_str(&first, "own"), "alice:pw-1");
    assert_eq!(mode(&first, "own"), 0o600);
    assert_eq!(mode(&first, "conn"), 0o644);
    let again = e.mount(objects).await.unwrap();
    assert_eq!(version(&first, "conn"), version(&again, "conn"));
    e.bao.write("kv/two", json!({"pass": "pw-2"})).await;
    let rotated = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&rotated, "conn"), "alice/pw-2");
    assert_ne!(version(&first, "conn"), version(&rotated, "conn"));
    assert_ne!(version(&first, "own"), version(&rotated, "own"));
    assert_eq!(version(&first, "user"), version(&rotated, "user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_is_the_same_on_kv_v1_and_v2() {
    let e = env().await;
    let data = json!({"user": "alice", "n": 42, "nested": {"a": [1, "x"]}, "ok": true});
    e.bao
        .write("secret/data/same", json!({ "data": data }))
        .await;
    e.bao.write("kv/same", data.clone()).await;
    let template = r#"'{{ secret.user }} {{ secret.n + 1 }} {{ secret.nested.a[1] }} {{ secret.ok | tojson }} {{ secret | length }} {{ secret | tojson }}'"#;
    let objects = format!(
        "- {{objectName: v2, secretPath: secret/data/same, template: {template}}}\n- {{objectName: v1, secretPath: kv/same, template: {template}}}\n"
    );
    let r = e.mount(&objects).await.unwrap();
    let v2 = file_str(&r, "v2");
    assert_eq!(v2, file_str(&r, "v1"));
    let (head, json_text) = v2.split_at(v2.find('{').unwrap());
    assert_eq!(head, "alice 43 x true 4 ");
    let parsed: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(parsed, data, "secret is the inner data on KV v2: {v2}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_is_the_whole_answer() {
    let e = env().await;
    e.bao
        .write("secret/data/resp", json!({"data": {"k": "v"}}))
        .await;
    e.bao.write("kv/resp", json!({"k": "v1"})).await;
    let objects = r#"
- objectName: v2
  secretPath: secret/data/resp
  template: "{{ response.data.data.k }}|{{ response.lease_duration }}|{{ response.data.metadata.version }}|{{ response.renewable | tojson }}|{{ (response.request_id | length > 0) | tojson }}|{{ 'empty' if response.lease_id == '' else 'set' }}|{{ response.warnings | tojson }}"
- objectName: v1
  secretPath: kv/resp
  template: "{{ response.data.k }}|{{ response.lease_duration }}"
"#;
    let r = e.mount(objects).await.unwrap();
    assert_eq!(file_str(&r, "v2"), "v|0|1|false|true|empty|null");
    let raw = e.bao.api("GET", "kv/resp", None).await;
    assert_eq!(
        file_str(&r, "v1"),
        format!("v1|{}", raw["lease_duration"]),
        "KV v1 answers with a lease duration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_builtin_and_ours() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/f",
            json!({"data": {
                "password": "s3cr3t",
                "blob": "aGVsbG8=",
                "js": "{\"a\": {\"b\": [1, 2]}}",
                "list": ["x", "y"],
                "obj": {"k": "v", "n": 1},
                "ws": "  pad  ",
                "multi": "l1\nl2",
                "url": "a b&c/d",
            }}),
        )
        .await;
    let cases: &[(&str, &str)] = &[
        ("b64encode", "{{ secret.password | b64encode }}"),
        ("b64decode", "{{ secret.blob | b64decode }}"),
        ("roundtrip", "{{ secret.password | b64encode | b64decode }}"),
        ("fromjson", "{{ (secret.js | fromjson).a.b[1] }}"),
        ("toyaml", "{{ secret.obj | toyaml }}"),
        ("tojson", "{{ secret.obj | tojson }}"),
        ("trim-upper", "{{ secret.ws | trim | upper }}"),
        ("join", "{{ secret.list | join(',') }}"),
        ("default", "{{ secret.missing | default('dflt') }}"),
        (
            "defined",
            "{% if secret.missing is defined %}yes{% else %}no{% endif %}",
        ),
        ("indent", "{{ secret.multi | indent(2) }}"),
        ("replace", "{{ secret.password | replace('s3', 'S') }}"),
        ("urlencode", "{{ secret.url | urlencode }}"),
        ("number", "{{ secret.obj.n + 1 }}"),
        (
            "items",
            "{% for k, v in secret.obj | dictsort %}{{ k }}={{ v }};{% endfor %}",
        ),
    ];
    let objects: String = cases
        .iter()
        .map(|(name, t)| {
            format!(
                "- objectName: {name}\n  secretPath: secret/data/f\n  template: {}\n",
                serde_json::to_string(t).unwrap()
            )
        })
        .collect();
    let r = e.mount(&objects).await.unwrap();
    let expect = |name: &str, want: &str| assert_eq!(file_str(&r, name), want, "{name}");
    expect("b64encode", "czNjcjN0");
    expect("b64decode", "hello");
    expect("roundtrip", "s3cr3t");
    expect("fromjson", "2");
    expect("trim-upper", "PAD");
    expect("join", "x,y");
    expect("default", "dflt");
    expect("defined", "no");
    expect("indent", "l1\n  l2");
    expect("replace", "Scr3t");
    expect("urlencode", "a%20b%26c/d");
    expect("number", "2");
    expect("items", "k=v;n=1;");
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(file_str(&r, "toyaml")).unwrap();
    assert_eq!(yaml["k"].as_str(), Some("v"), "{}", file_str(&r, "toyaml"));
    assert_eq!(yaml["n"].as_i64(), Some(1), "{}", file_str(&r, "toyaml"));
    let js: Value = serde_json::from_str(file_str(&r, "tojson")).unwrap();
    assert_eq!(js, json!({"k": "v", "n": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undefined_names_are_not_found_and_never_show_values() {
    let e = env().await;
    e.bao
        .write(
            "secret/data/u",
            json!({"data": {"password": SECRET_VALUE, "user": "bob"}}),
        )
        .await;
    let one = |t: &str| {
        format!(
            "- objectName: cfg\n  secretPath: secret/data/u\n  template: {}\n",
            serde_json::to_string(t).unwrap()
        )
    };
    let msg = expect_err(
        "misspelt key",
        e.mount(&one("{{ secret.pasword }}")).await,
        Code::NotFound,
        &["\"cfg\"", "pasword", "password"],
    );
    assert!(msg.contains("user"), "lists the keys present: {msg}");
    expect_err(
        "misspelt top-level name",
        e.mount(&one("{{ secrets.password }}")).await,
        Code::NotFound,
        &["\"cfg\"", "secrets", "response", "objects"],
    );
    let with_other = format!(
        "- {{objectName: other, secretPath: secret/data/u, secretKey: user}}\n{}",
        one("{{ objects.nope }}")
    );
    expect_err(
        "unknown object",
        e.mount(&with_other).await,
        Code::NotFound,
        &["\"cfg\"", "nope", "other"],
    );
    // Templates do not see each other.
    let two_templates = format!(
        "- {{objectName: t1, template: x}}\n{}",
        one("{{ objects.t1 }}")
    );
    expect_err(
        "another template",
        e.mount(&two_templates).await,
        Code::NotFound,
        &["\"cfg\"", "t1"],
    );
    // The missing name is itself a secret value: it must not be echoed.
    expect_err(
        "name computed from a value",
        e.mount(&one("{{ secret[secret.password] }}")).await,
        Code::NotFound,
        &["\"cfg\""],
    );
    // Whatever else fails on a value, the value stays out of the message.
    for t in [
        "{{ secret.password | int }}",
        "{{ secret.password + 1 }}",
        "{{ secret.password | fromjson }}",
        "{{ secret.password | b64decode }}",
        "{{ secret.password.foo.bar }}",
        "{{ range(secret.password) }}",
        "{{ secret.password() }}",
        "{{ secret.password | nosuchfilter }}",
        "{{ objects[secret.password] }}",
        "{% for x in secret.password.nope %}{% endfor %}",
        "{{ secret.user[secret.password] }}",
    ] {
        let err = e.mount(&one(t)).await.expect_err(&format!("{t} must fail"));
        assert_ne!(err.code(), Code::Ok);
        assert_no_secret(t, err.message());
        assert!(
            err.message().contains("\"cfg\""),
            "{t}: names the object: {}",
            err.message()
        );
    }
    // And none of it reached the log.
    assert!(
        !e.provider.log_text().contains(SECRET_VALUE),
        "the provider's log holds the secret value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_errors_name_object_line_and_column_before_vault() {
    let e = env().await;
    e.bao
        .write("secret/data/u", json!({"data": {"password": SECRET_VALUE}}))
        .await;
    let cases: &[(&str, &str)] = &[
        ("line one\nline two\n{% if %}", "line 3, column "),
        ("{{ secret.password ", "line 1, column "),
        ("ok\n{% for x in secret %}\nno end", "line "),
        ("{% endif %}", "line 1, column "),
        ("a\n\n  {{ secret.password | }}", "line 3, column "),
        ("{% macro m( %}{% endmacro %}", "line 1, column "),
    ];
    for (t, position) in cases {
        let objects = format!(
            "- {{objectName: ok, secretPath: secret/data/u, secretKey: password}}\n- objectName: cfg\n  secretPath: secret/data/u\n  template: {}\n",
            serde_json::to_string(t).unwrap()
        );
        let msg = expect_err(
            t,
            e.mount(&objects).await,
            Code::InvalidArgument,
            &["object \"cfg\"", position],
        );
        let at = msg.find(position).unwrap() + position.len();
        assert!(
            msg[at..].starts_with(|c: char| c.is_ascii_digit()),
            "{t}: a number follows {position:?}: {msg}"
        );
    }
    assert_eq!(
        e.logins(),
        0,
        "a template that cannot parse must not reach Vault"
    );
}

/// An unknown filter is reported as a syntax error (INVALID_ARGUMENT), so like every syntax
/// error it must be found before Vault is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_filter_is_invalid_argument_and_shows_no_value() {
    let e = env().await;
    e.bao
        .write("secret/data/u", json!({"data": {"password": SECRET_VALUE}}))
        .await;
    expect_err(
        "unknown filter",
        e.mount("- {objectName: cfg, secretPath: secret/data/u, template: '{{ secret.password | nosuchfilter }}'}")
            .await,
        Code::InvalidArgument,
        &["object \"cfg\"", "nosuchfilter", "line 1, column "],
    );
    // Filter names are only looked up when the template runs (after the read), so this is
    // not a syntax error; it is still the class's fault, and no value is shown.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_source_size_is_bounded() {
    let e = env().await;
    let template = |n: usize| format!("- objectName: big\n  template: {}\n", "x".repeat(n));
    let r = e.mount(&template(65536)).await.unwrap();
    assert_eq!(file(&r, "big").len(), 65536);
    let logins = e.logins();
    expect_err(
        "65537 bytes",
        e.mount(&template(65537)).await,
        Code::InvalidArgument,
        &["\"big\""],
    );
    assert_eq!(e.logins(), logins, "refused before Vault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_templates_are_bounded_and_other_pods_unaffected() {
    let e = env().await;
    e.bao
        .write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let normal = "- {objectName: k, secretPath: secret/data/app, secretKey: k}\n- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k | upper }}'}";
    let warm = e.mount(normal).await.unwrap();
    assert_eq!(file_str(&warm, "t"), "V");
    let pid = e.provider.child.id();
    let rss_before = rss_kib(pid);

    const ANY: &[&str] = &[
        "template-fuel",
        "template-max-output",
        "template-recursion-limit",
    ];
    let hostile: &[(&str, &str, &[&str])] = &[
        (
            "nested loops",
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &["template-fuel"],
        ),
        (
            "endless recursion",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &["template-recursion-limit"],
        ),
        ("a gigabyte string", "{{ \"x\" * 1000000000 }}", ANY),
        (
            "a loop of 10 MB strings",
            "{% for i in range(1000) %}{{ \"x\" * 10000000 }}{% endfor %}",
            ANY,
        ),
        (
            "just over the output limit",
            "{% for i in range(1100) %}{{ \"x\" * 1000 }}{% endfor %}",
            &["template-max-output"],
        ),
        (
            "doubling a string",
            "{% set ns = namespace(s=\"x\") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            ANY,
        ),
    ];
    let object = |t: &str| format!("- objectName: evil\n  template: '{t}'\n");
    for (name, t, flags) in hostile {
        let start = Instant::now();
        let result = e.mount(&object(t)).await;
        let took = start.elapsed();
        let msg = expect_err(name, result, Code::ResourceExhausted, &["\"evil\""]);
        assert!(
            flags.iter().any(|f| msg.contains(f)),
            "{name}: names none of {flags:?}: {msg}"
        );
        // Bounded by fuel: milliseconds; unbounded, minutes. The margin holds under load.
        assert!(
            took < Duration::from_secs(5),
            "{name}: refused after {took:?}"
        );
    }

    let rss_sequential = rss_kib(pid);
    assert!(
        rss_sequential.saturating_sub(rss_before) < 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_sequential} KiB"
    );

    // Hostile pods and a normal pod at once: the normal pod mounts.
    let mut tasks = Vec::new();
    for (i, (_, t, _)) in hostile.iter().enumerate() {
        let client = e.client.clone();
        let req = Pod::new("default", "app").request(class(&object(t)));
        tasks.push((
            i,
            tokio::spawn(async move { client.mount(req).await.map(|_| ()) }),
        ));
    }
    let other = Pod::new("default", "app");
    let start = Instant::now();
    let ok = e.client.mount(other.request(class(normal))).await.unwrap();
    let took = start.elapsed();
    assert_eq!(file_str(&ok, "t"), "V");
    assert!(took < Duration::from_secs(5), "normal mount took {took:?}");
    for (i, t) in tasks {
        let err = t.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{}", hostile[i].0);
    }

    let rss_after = rss_kib(pid);
    assert!(
        rss_after.saturating_sub(rss_before) < 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB with hostile pods in parallel"
    );
    let after = e.mount(normal).await.unwrap();
    assert_eq!(file_str(&after, "k"), "v");
    assert_eq!(file_str(&after, "t"), "V");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_overrides_are_bounded_and_limits_follow_the_flags() {
    let bao = openbao().await;
    bao.write("secret/data/app", json!({"data": {"k": "v"}}))
        .await;
    let default = provider(&bao, &[]).await;
    let low_fuel = provider(&bao, &["-template-fuel=1000"]).await;
    let low_depth = provider(&bao, &["-template-recursion-limit=3"]).await;
    let low_output = provider(&bao, &["-template-max-output=1024"]).await;
    let pod = Pod::new("default", "app");

    // A class the pod overrides through its volume attributes (the driver merges them
    // into the request's attributes).
    let benign = "- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k }}'}";
    let client = default.client().await;
    assert_eq!(
        file_str(
            &client.mount(pod.request(class(benign))).await.unwrap(),
            "t"
        ),
        "v"
    );
    let mut req = pod.request(class(benign));
    let mut attrs: Value = serde_json::from_str(&req.attributes).unwrap();
    attrs["objects"] = json!(
        "- objectName: t\n  template: '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}'\n"
    );
    req.attributes = attrs.to_string();
    let start = Instant::now();
    let result = client.mount(req).await;
    let took = start.elapsed();
    expect_err(
        "override",
        result,
        Code::ResourceExhausted,
        &["template-fuel"],
    );
    assert!(took < Duration::from_secs(5), "refused after {took:?}");

    // Templates the defaults accept, each refused by one low limit, naming its flag.
    let cases: &[(&ProviderProcess, &str, &str, &str)] = &[
        (
            &low_fuel,
            "{% for i in range(2000) %}{% endfor %}ok",
            "ok",
            "template-fuel",
        ),
        (
            &low_depth,
            "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}r",
            "r",
            "template-recursion-limit",
        ),
        (
            &low_output,
            "{{ \"y\" * 2000 }}",
            &"y".repeat(2000),
            "template-max-output",
        ),
    ];
    for (low, t, output, flag) in cases {
        let objects = format!("- objectName: t\n  template: '{t}'\n");
        let ok = client.mount(pod.request(class(&objects))).await.unwrap();
        assert_eq!(file_str(&ok, "t"), *output, "defaults accept {t}");
        let low_client = low.client().await;
        expect_err(
            t,
            low_client.mount(pod.request(class(&objects))).await,
            Code::ResourceExhausted,
            &["\"t\"", flag],
        );
        // The low-limit provider still mounts ordinary templates.
        let fine = low_client
            .mount(pod.request(class(
                "- {objectName: t, secretPath: secret/data/app, template: '{{ secret.k }}'}",
            )))
            .await
            .unwrap();
        assert_eq!(file_str(&fine, "t"), "v");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_combinations_before_vault() {
    let e = env().await;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "template+secretKey",
            "- {objectName: a, secretPath: secret/data/app, template: x, secretKey: k}",
            &["template", "secretKey"],
        ),
        (
            "template+selector",
            "- {objectName: a, secretPath: secret/data/app, template: x, selector: /k}",
            &["template", "selector"],
        ),
        (
            "template+allKeys",
            "- {objectName: a, secretPath: secret/data/app, template: x, allKeys: true}",
            &["template", "allKeys"],
        ),
        (
            "selector+secretKey",
            "- {objectName: a, secretPath: secret/data/app, selector: /k, secretKey: k}",
            &["selector", "secretKey"],
        ),
        (
            "allKeys+secretKey",
            "- {objectName: a, secretPath: secret/data/app, allKeys: true, secretKey: k}",
            &["allKeys", "secretKey"],
        ),
        (
            "relative selector",
            "- {objectName: a, secretPath: secret/data/app, selector: db/password}",
            &["selector", "db/password"],
        ),
        (
            "a file inside an allKeys directory",
            "- {objectName: a, secretPath: secret/data/app, allKeys: true}\n- {objectName: a/k, secretPath: secret/data/app, secretKey: k}",
            &["a/k", "allKeys"],
        ),
        (
            "no secretPath without a template",
            "- {objectName: a, secretKey: k}",
            &["secretPath"],
        ),
    ];
    for (name, objects, needles) in cases {
        let mut needles = needles.to_vec();
        needles.push("\"a\"");
        expect_err(
            name,
            e.mount(objects).await,
            Code::InvalidArgument,
            &needles,
        );
    }
    assert_eq!(e.logins(), 0, "refused before Vault was called");
}
