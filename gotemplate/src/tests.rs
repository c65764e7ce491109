//! Go's answers (go1.21 text/template, as in Docker 20.10-28's CLI) for templates over a
//! container-like value.

use serde_json::json;

use crate::{Funcs, Schema, Template, Value};

fn data() -> Value {
    Value::from_json(
        &json!({
            "Id": "0123456789abcdef",
            "Config": {
                "Cmd": ["nginx", "-g", "daemon off;"],
                "Entrypoint": null,
                "Env": ["A=1", "B=2"],
                "Labels": {"z": "last", "a": "first"},
                "ExposedPorts": {"80/tcp": {}},
                "Tty": false,
            },
            "State": {"Status": "running", "Pid": 42, "ExitCode": 0, "Error": "", "Health": null},
            "HostConfig": {"PidsLimit": null, "Memory": 0, "Binds": null, "NanoCpus": 1500000000},
            "Mounts": [],
            "Ratio": 1.5,
        }),
        &Schema {
            maps: &["Config.Labels", "Config.ExposedPorts"],
            lists: &["Config.Entrypoint", "HostConfig.Binds"],
            ..Default::default()
        },
    )
}

fn render(t: &str) -> Result<String, String> {
    let f = Funcs::docker();
    Template::parse(t, &f)
        .and_then(|t| t.execute(&data(), &f))
        .map_err(|e| e.0)
}

#[test]
fn values_print_as_go() {
    let cases = [
        ("{{.Config.Cmd}}", "[nginx -g daemon off;]"),
        ("{{.Config.Entrypoint}}", "[]"),
        ("{{.Config.Labels}}", "map[a:first z:last]"),
        ("{{.Config.ExposedPorts}}", "map[80/tcp:{}]"),
        ("{{.State}}", "{running 42 0  <nil>}"),
        ("{{.State.Health}}", "<nil>"),
        ("{{.HostConfig.PidsLimit}}", "<nil>"),
        ("{{.HostConfig.Binds}}", "[]"),
        ("{{.Mounts}}", "[]"),
        ("{{.Config.Labels.a}}", "first"),
        ("{{.Config.Labels.nope}}", "<no value>"),
        ("{{index .Config.Labels \"nope\"}}", ""),
        ("{{.Ratio}}", "1.5"),
        ("{{.Config.Tty}}", "false"),
        ("{{json .Config.Entrypoint}}", "null"),
        ("{{json .Config.Labels}}", r#"{"a":"first","z":"last"}"#),
        (
            "{{json .State}}",
            r#"{"Status":"running","Pid":42,"ExitCode":0,"Error":"","Health":null}"#,
        ),
    ];
    for (t, want) in cases {
        assert_eq!(render(t).as_deref(), Ok(want), "{t}");
    }
}

#[test]
fn control_structures() {
    let cases = [
        (
            "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
            "a=first;z=last;",
        ),
        ("{{range .Config.Labels}}{{.}} {{end}}", "first last "),
        (
            "{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}",
            "0:A=1 1:B=2 ",
        ),
        ("{{range .Mounts}}x{{else}}none{{end}}", "none"),
        ("{{range .Config.Entrypoint}}x{{end}}", ""),
        (
            "{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}",
            "A=1",
        ),
        (
            "{{range .Config.Env}}{{if eq . \"A=1\"}}{{continue}}{{end}}{{.}}{{end}}",
            "B=2",
        ),
        (
            "{{if .Config.Tty}}t{{else if .State.Pid}}pid{{else}}no{{end}}",
            "pid",
        ),
        ("{{with .State}}{{.Status}}{{end}}", "running"),
        ("{{with .Config.Entrypoint}}x{{else}}empty{{end}}", "empty"),
        ("{{with .Mounts}}x{{else with .State}}{{.Pid}}{{end}}", "42"),
        ("{{$x := .State.Pid}}{{$x}}", "42"),
        ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
        (
            "{{range .Config.Env}}{{$.Id}}{{end}}",
            "0123456789abcdef0123456789abcdef",
        ),
        ("a {{- \" b \" -}} c", "a b c"),
        ("{{/* comment */}}x", "x"),
        ("x {{- /* comment */ -}} y", "xy"),
        ("{{if and .State.Pid (not .Config.Tty)}}yes{{end}}", "yes"),
        ("{{or .Config.Tty \"fallback\"}}", "fallback"),
        ("{{and .Config.Tty .Nope}}", "false"),
        (
            "{{len .Config.Env}} {{len .Config.Labels}} {{len .Id}}",
            "2 2 16",
        ),
        ("{{index .Config.Env 1}}", "B=2"),
        ("{{slice .Id 0 4}}", "0123"),
        ("{{printf \"%.12s\" .Id}}", "0123456789ab"),
        ("{{.Id | printf \"%q\"}}", "\"0123456789abcdef\""),
        ("{{print 1 2 \"a\"}}", "1 2a"),
        ("{{println .State.Pid}}", "42\n"),
        ("{{join .Config.Cmd \",\"}}", "nginx,-g,daemon off;"),
        ("{{split \"a:b\" \":\"}}", "[a b]"),
        (
            "{{upper .State.Status}} {{title \"hello world\"}}",
            "RUNNING Hello World",
        ),
        ("{{pad \"x\" 2 1}}|{{truncate .Id 4}}", "  x |0123"),
        (
            "{{gt .State.Pid 40}} {{lt .State.Status \"s\"}} {{ne 1 2}} {{eq .State.Pid 1 42}}",
            "true true true true",
        ),
        ("{{(index .Config.Env 0)}}", "A=1"),
        ("{{html \"<a>\"}} {{urlquery \"a b\"}}", "&lt;a&gt; a+b"),
        ("{{'a'}}", "97"),
    ];
    for (t, want) in cases {
        assert_eq!(render(t).as_deref(), Ok(want), "{t}");
    }
}

#[test]
fn errors_as_go() {
    let cases = [
        ("{{.Nope}}", "template: :1:2: executing \"\" at <.Nope>: map has no entry for key \"Nope\""),
        ("{{.State.Nope}}", "template: :1:2: executing \"\" at <.State.Nope>: map has no entry for key \"Nope\""),
        ("x\n {{.Nope}}", "template: :2:3: executing \"\" at <.Nope>: map has no entry for key \"Nope\""),
        ("{{.Id.X}}", "template: :1:2: executing \"\" at <.Id.X>: can't evaluate field X in type string"),
        ("{{.State.Health.Status}}", "template: :1:2: executing \"\" at <.State.Health.Status>: nil pointer evaluating interface {}.Status"),
        ("{{len 3}}", "template: :1:2: executing \"\" at <len 3>: error calling len: len of type int"),
        ("{{index .Config.Env 5}}", "template: :1:2: executing \"\" at <index .Config.Env 5>: error calling index: index out of range: 5"),
        ("{{range .Id}}{{end}}", "template: :1:8: executing \"\" at <.Id>: range can't iterate over 0123456789abcdef"),
        ("{{upper .State.Pid}}", "template: :1:2: executing \"\" at <upper .State.Pid>: wrong type for value; expected string; got int"),
        ("{{.Foo", "template: :1: unclosed action"),
        ("{{if .Id}}x", "template: :1: unexpected EOF"),
        ("{{end}}", "template: :1: unexpected {{end}}"),
        ("{{nope .Id}}", "template: :1: function \"nope\" not defined"),
        ("{{$x}}", "template: :1: undefined variable \"$x\""),
        ("{{\"abc}}", "template: :1: unterminated quoted string"),
    ];
    for (t, want) in cases {
        assert_eq!(render(t), Err(want.to_string()), "{t}");
    }
}

#[test]
fn struct_with_a_type_name_reports_go_field_errors() {
    let f = Funcs::docker();
    let row = Value::from_json(
        &json!({"ID": "abc", "Names": "web"}),
        &Schema {
            type_name: Some("*formatter.ContainerContext"),
            ..Default::default()
        },
    );
    let t = Template::parse("{{.ID}} {{.Nope}}", &f).unwrap();
    assert_eq!(
        t.execute(&row, &f).unwrap_err().0,
        "template: :1:10: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext"
    );
    // A table header runs the same template on a map of column names.
    let header = Value::Map(Some(
        [("ID".to_string(), Value::str("CONTAINER ID"))]
            .into_iter()
            .collect(),
    ));
    let t = Template::parse("{{.ID}}\t{{lower .ID}}\t{{.Names}}", &f).unwrap();
    assert_eq!(
        t.execute(&header, &Funcs::docker_header()).unwrap(),
        "CONTAINER ID\tCONTAINER ID\t<no value>"
    );
}
