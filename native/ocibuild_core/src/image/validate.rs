//! Refusing config and manifest values that cannot be stored faithfully.
//!
//! JSON can carry a NUL byte, but the runtime cannot: an env entry, an argument or a path is a
//! C string by the time it reaches `execve` or `chdir`, so a NUL silently cuts it short, and a
//! label or annotation with one is read differently by different tools. An env name with `=`
//! would be split at the wrong place by every reader of `NAME=value`. Every sink renders the
//! image through [`super::render`], which checks here first, so a value is refused with the
//! key that holds it before anything is written.

use super::{ConfigOverrides, Image};
use crate::{Error, Result};

/// Check every user-set value of `image`; the first bad one is the error.
pub fn check(image: &Image) -> Result<()> {
    check_config(&image.config)?;
    for (key, value) in &image.annotations {
        no_nul("annotations", key, key)?;
        no_nul("annotations", key, value)?;
    }
    Ok(())
}

fn check_config(c: &ConfigOverrides) -> Result<()> {
    for (name, value) in &c.env {
        if name.is_empty() {
            return Err(invalid("env", name, "empty_name"));
        }
        no_nul("env", name, name)?;
        if name.contains('=') {
            return Err(invalid("env", name, "equals_in_name"));
        }
        no_nul("env", name, value)?;
    }
    for (key, value) in &c.labels {
        no_nul("labels", key, key)?;
        no_nul("labels", key, value)?;
    }
    for (field, items) in [("entrypoint", &c.entrypoint), ("cmd", &c.cmd)] {
        for item in items.iter().flatten() {
            no_nul(field, item, item)?;
        }
    }
    for port in &c.exposed_ports {
        no_nul("exposed_ports", port, port)?;
    }
    for (field, value) in [("workdir", &c.workdir), ("user", &c.user)] {
        if let Some(v) = value {
            no_nul(field, v, v)?;
        }
    }
    Ok(())
}

fn no_nul(field: &'static str, key: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(invalid(field, key, "nul_byte"));
    }
    Ok(())
}

fn invalid(field: &'static str, key: &str, why: &'static str) -> Error {
    Error::InvalidValue {
        field,
        key: key.to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(image: &Image) -> (&'static str, String, &'static str) {
        match check(image) {
            Err(Error::InvalidValue { field, key, why }) => (field, key, why),
            other => panic!("expected InvalidValue, got {other:?}"),
        }
    }

    fn with_config(f: impl FnOnce(&mut ConfigOverrides)) -> Image {
        let mut image = Image::default();
        f(&mut image.config);
        image
    }

    #[test]
    fn ordinary_values_pass() {
        let image = with_config(|c| {
            c.env = vec![
                ("PATH".into(), "/bin:/usr/bin".into()),
                ("X".into(), "a=b".into()),
            ];
            c.labels.insert("org.example".into(), "".into());
            c.entrypoint = Some(vec!["/app/bin/run".into(), "".into()]);
            c.cmd = Some(vec![]);
            c.workdir = Some("/app".into());
            c.user = Some("65534:65534".into());
            c.exposed_ports = vec!["80/tcp".into()];
        });
        check(&image).unwrap();
    }

    #[test]
    fn env_names_need_no_nul_no_equals_and_some_text() {
        let env = |n: &str, v: &str| with_config(|c| c.env = vec![(n.into(), v.into())]);
        assert_eq!(why(&env("A\0B", "x")), ("env", "A\0B".into(), "nul_byte"));
        assert_eq!(
            why(&env("A=B", "x")),
            ("env", "A=B".into(), "equals_in_name")
        );
        assert_eq!(why(&env("", "x")), ("env", "".into(), "empty_name"));
        assert_eq!(why(&env("A", "x\0y")), ("env", "A".into(), "nul_byte"));
    }

    #[test]
    fn nul_is_refused_in_every_field_with_its_key() {
        let cases: Vec<(Image, (&str, &str))> = vec![
            (
                with_config(|c| {
                    c.labels.insert("k\0".into(), "v".into());
                }),
                ("labels", "k\0"),
            ),
            (
                with_config(|c| {
                    c.labels.insert("k".into(), "v\0".into());
                }),
                ("labels", "k"),
            ),
            (
                with_config(|c| c.entrypoint = Some(vec!["ok".into(), "a\0".into()])),
                ("entrypoint", "a\0"),
            ),
            (
                with_config(|c| c.cmd = Some(vec!["\0".into()])),
                ("cmd", "\0"),
            ),
            (
                with_config(|c| c.workdir = Some("/a\0".into())),
                ("workdir", "/a\0"),
            ),
            (with_config(|c| c.user = Some("\0".into())), ("user", "\0")),
            (
                with_config(|c| c.exposed_ports = vec!["80\0/tcp".into()]),
                ("exposed_ports", "80\0/tcp"),
            ),
            (
                Image {
                    annotations: [("a\0".to_string(), "v".to_string())].into(),
                    ..Default::default()
                },
                ("annotations", "a\0"),
            ),
            (
                Image {
                    annotations: [("a".to_string(), "v\0".to_string())].into(),
                    ..Default::default()
                },
                ("annotations", "a"),
            ),
        ];
        for (image, (field, key)) in cases {
            assert_eq!(why(&image), (field, key.to_string(), "nul_byte"));
        }
    }

    #[test]
    fn render_refuses_before_deriving_anything() {
        let image = with_config(|c| c.user = Some("a\0".into()));
        let err =
            super::super::render(&image, &super::super::RenderOptions { created: 0 }).unwrap_err();
        assert!(
            matches!(err, Error::InvalidValue { field: "user", .. }),
            "{err:?}"
        );
    }
}
