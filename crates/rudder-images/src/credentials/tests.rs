use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(u: &str, p: &str) -> Auth {
    Auth::Basic { username: u.into(), password: p.into() }
}

fn image(r: &str) -> ImageRef {
    ImageRef::parse(r).unwrap()
}

#[test]
fn dockerconfigjson_auth_field() {
    let json = format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{}"}}}}}}"#, b64("alice:s3:cret"));
    let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
    // The password may itself contain ':'; only the first one splits.
    assert_eq!(c.lookup("127.0.0.1:5000"), Some(&basic("alice", "s3:cret")));
    assert_eq!(c.lookup("127.0.0.1:5001"), None);
}

#[test]
fn username_password_fields_and_legacy_dockercfg() {
    let json = r#"{"auths":{"reg.example.com":{"username":"bob","password":"pw","email":"x@y"}}}"#;
    let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
    assert_eq!(c.lookup("reg.example.com"), Some(&basic("bob", "pw")));
    let legacy =
        format!(r#"{{"https://reg.example.com":{{"auth":"{}","email":"e"}}}}"#, b64("u:p"));
    let c = Credentials::from_docker_config(legacy.as_bytes()).unwrap();
    assert_eq!(c.lookup("reg.example.com"), Some(&basic("u", "p")));
}

#[test]
fn docker_hub_aliases() {
    for key in [
        "https://index.docker.io/v1/",
        "index.docker.io",
        "registry-1.docker.io",
        "docker.io",
        "https://registry-1.docker.io/v2/",
    ] {
        let json = format!(r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#, b64("hub:pw"));
        let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
        assert_eq!(c.lookup("docker.io"), Some(&basic("hub", "pw")), "{key}");
        assert_eq!(c.lookup("index.docker.io"), Some(&basic("hub", "pw")), "{key}");
        assert_eq!(c.for_image(&image("busybox")), vec![&basic("hub", "pw")], "{key}");
        assert!(c.for_image(&image("quay.io/x/y")).is_empty());
    }
}

#[test]
fn several_secrets_merge_and_most_specific_wins() {
    let a = format!(r#"{{"auths":{{"reg.io":{{"auth":"{}"}}}}}}"#, b64("a:1"));
    let b = format!(
        r#"{{"auths":{{"reg.io/team":{{"auth":"{}"}},"other.io":{{"auth":"{}"}}}}}}"#,
        b64("b:2"),
        b64("c:3")
    );
    let c = Credentials::from_docker_configs([a.as_bytes(), b.as_bytes()]).unwrap();
    assert_eq!(c.for_image(&image("reg.io/team/app:1")), vec![&basic("b", "2"), &basic("a", "1")]);
    assert_eq!(c.for_image(&image("reg.io/teamx/app")), vec![&basic("a", "1")]);
    assert_eq!(c.for_image(&image("other.io/z")), vec![&basic("c", "3")]);
    assert_eq!(c.lookup("reg.io"), Some(&basic("a", "1")));
}

#[test]
fn wildcard_hosts() {
    let json = format!(r#"{{"auths":{{"*.example.com":{{"auth":"{}"}}}}}}"#, b64("w:1"));
    let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
    assert_eq!(c.for_image(&image("a.example.com/x")).len(), 1);
    assert!(c.for_image(&image("example.com/x")).is_empty());
    assert!(c.for_image(&image("a.b.example.com/x")).is_empty());
}

#[test]
fn registry_token_is_bearer_and_debug_redacts() {
    let json = r#"{"auths":{"r.io":{"registrytoken":"tok"}}}"#;
    let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
    let auth = c.lookup("r.io").unwrap();
    assert_eq!(auth, &Auth::Bearer { token: "tok".into() });
    assert!(!format!("{c:?}").contains("tok\""));
    let json = format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("user:hunter2"));
    let c = Credentials::from_docker_config(json.as_bytes()).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn malformed_entries_are_errors() {
    for bad in [
        r#"not json"#.to_owned(),
        r#"{"auths":{"r.io":{"auth":"!!!"}}}"#.to_owned(),
        format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("nocolon")),
        r#"{"auths":{"r.io":{"email":"x"}}}"#.to_owned(),
        r#"{"auths":{"r.io":"string"}}"#.to_owned(),
    ] {
        assert!(Credentials::from_docker_config(bad.as_bytes()).is_err(), "{bad}");
    }
    let empty = Credentials::from_docker_config(br#"{"auths":{}}"#).unwrap();
    assert!(empty.is_empty());
}
