//! Reading an SPDX 2.x JSON document from untrusted bytes, as far as the verifier needs: the
//! document is well formed (the fields SPDX 2.2 and 2.3 require of a document and of each
//! package, unique SPDXIDs, relationships between elements that exist, something it
//! DESCRIBES) and its packages as (name, version) pairs.
//!
//! ocibuild writes SPDX 2.2 (`supply::sbom`); 2.3 documents (syft, trivy) are read the same
//! way: for what is checked here the two versions agree.

use std::collections::BTreeSet;

use serde_json::Value;

/// The SPDX versions read.
const VERSIONS: [&str; 2] = ["SPDX-2.2", "SPDX-2.3"];
/// Documents larger than this are refused unread.
pub const MAX_SPDX_BYTES: usize = 16 << 20;

/// A package as the verifier compares them: name and `versionInfo` (empty when absent).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub name: String,
    pub version: String,
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.version)
        }
    }
}

/// What a well-formed document says, for the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spdx {
    pub version: String,
    pub packages: BTreeSet<Package>,
}

/// The document in `bytes`, or why it is not a well-formed SPDX 2.2/2.3 JSON document.
pub fn parse(bytes: &[u8]) -> Result<Spdx, String> {
    if bytes.len() > MAX_SPDX_BYTES {
        return Err(format!(
            "{} bytes, more than the {MAX_SPDX_BYTES} an SBOM may have",
            bytes.len()
        ));
    }
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let text = |v: &Value, field: &str| -> Result<String, String> {
        v.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("no {field}"))
    };
    let version = text(&doc, "spdxVersion")?;
    if !VERSIONS.contains(&version.as_str()) {
        return Err(format!(
            "spdxVersion {:?}, not {}",
            crate::error::shown(&version),
            VERSIONS.join(" or ")
        ));
    }
    if text(&doc, "SPDXID")? != "SPDXRef-DOCUMENT" {
        return Err("the document's SPDXID is not SPDXRef-DOCUMENT".into());
    }
    if text(&doc, "dataLicense")? != "CC0-1.0" {
        return Err("dataLicense is not CC0-1.0".into());
    }
    text(&doc, "name")?;
    text(&doc, "documentNamespace")?;
    let creation = doc.get("creationInfo").ok_or("no creationInfo")?;
    text(creation, "created")?;
    match creation.get("creators").and_then(Value::as_array) {
        Some(c) if !c.is_empty() && c.iter().all(Value::is_string) => {}
        _ => return Err("creationInfo has no creators".into()),
    }
    let Some(Value::Array(list)) = doc.get("packages") else {
        return Err("no packages list".into());
    };
    let mut ids = BTreeSet::from(["SPDXRef-DOCUMENT".to_string()]);
    let mut packages = BTreeSet::new();
    for p in list {
        let id = text(p, "SPDXID").map_err(|e| format!("a package with {e}"))?;
        let name = text(p, "name").map_err(|e| format!("package {id} has {e}"))?;
        text(p, "downloadLocation").map_err(|e| format!("package {id} has {e}"))?;
        if !id.starts_with("SPDXRef-") {
            return Err(format!(
                "package {name}: SPDXID {id:?} does not start with SPDXRef-"
            ));
        }
        if !ids.insert(id.clone()) {
            return Err(format!("SPDXID {id} is used twice"));
        }
        let version = match p.get("versionInfo") {
            None => String::new(),
            Some(Value::String(v)) => v.clone(),
            Some(_) => return Err(format!("package {id}: versionInfo is not text")),
        };
        packages.insert(Package { name, version });
    }
    let mut describes = Vec::new();
    if let Some(list) = doc.get("documentDescribes") {
        let list = list.as_array().ok_or("documentDescribes is not a list")?;
        for d in list {
            describes.push(
                d.as_str()
                    .ok_or("documentDescribes holds a non-text")?
                    .to_string(),
            );
        }
    }
    if let Some(rels) = doc.get("relationships") {
        let rels = rels.as_array().ok_or("relationships is not a list")?;
        for r in rels {
            let from = text(r, "spdxElementId").map_err(|e| format!("a relationship has {e}"))?;
            let kind =
                text(r, "relationshipType").map_err(|e| format!("a relationship has {e}"))?;
            let to =
                text(r, "relatedSpdxElement").map_err(|e| format!("a relationship has {e}"))?;
            for end in [&from, &to] {
                // NONE and NOASSERTION are SPDX's own words for "no element".
                let special = end == "NONE" || end == "NOASSERTION";
                if !special && !ids.contains(end.as_str()) {
                    return Err(format!(
                        "a {kind} relationship names {end}, which is not in the document"
                    ));
                }
            }
            if from == "SPDXRef-DOCUMENT" && kind == "DESCRIBES" {
                describes.push(to);
            }
        }
    }
    if describes.is_empty() {
        return Err("the document DESCRIBES nothing".into());
    }
    if let Some(missing) = describes.iter().find(|d| !ids.contains(d.as_str())) {
        return Err(format!(
            "the document describes {missing}, which is not in it"
        ));
    }
    Ok(Spdx { version, packages })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supply::sbom::{spdx_json, Dependency, SbomInput};

    fn ours() -> Vec<u8> {
        spdx_json(&SbomInput {
            name: "hello".into(),
            version: "0.1.0".into(),
            tool: "ocibuild-test".into(),
            erts_version: Some("14.2".into()),
            dependencies: vec![Dependency {
                name: "jason".into(),
                version: "1.4.1".into(),
                source: "hex".into(),
            }],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn what_ocibuild_writes_is_read_with_its_packages() {
        let spdx = parse(&ours()).unwrap();
        assert_eq!(spdx.version, "SPDX-2.2");
        let names: Vec<String> = spdx.packages.iter().map(|p| p.to_string()).collect();
        assert!(names.contains(&"hello@0.1.0".to_string()), "{names:?}");
        assert!(names.contains(&"jason@1.4.1".to_string()), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("erts@14.2")),
            "{names:?}"
        );
    }

    #[test]
    fn spdx_2_3_is_read_too() {
        let mut doc: Value = serde_json::from_slice(&ours()).unwrap();
        doc["spdxVersion"] = "SPDX-2.3".into();
        assert_eq!(
            parse(doc.to_string().as_bytes()).unwrap().version,
            "SPDX-2.3"
        );
    }

    #[test]
    fn broken_documents_say_why() {
        let good: Value = serde_json::from_slice(&ours()).unwrap();
        let broken = |f: &dyn Fn(&mut Value)| {
            let mut d = good.clone();
            f(&mut d);
            parse(d.to_string().as_bytes()).unwrap_err()
        };
        assert!(parse(b"not json").unwrap_err().contains("not JSON"));
        assert!(broken(&|d| d["spdxVersion"] = "SPDX-3.0".into()).contains("spdxVersion"));
        assert!(broken(&|d| d["packages"] = Value::Null).contains("packages"));
        assert!(broken(&|d| d["packages"][0]["name"] = Value::Null).contains("name"));
        assert!(broken(&|d| {
            let first = d["packages"][0].clone();
            d["packages"].as_array_mut().unwrap().push(first);
        })
        .contains("twice"));
        assert!(
            broken(&|d| d["relationships"][0]["relatedSpdxElement"] = "SPDXRef-x".into())
                .contains("not in the document")
        );
        assert!(broken(&|d| {
            d["documentDescribes"] = serde_json::json!([]);
            d["relationships"] = serde_json::json!([]);
        })
        .contains("DESCRIBES nothing"));
        assert!(
            broken(&|d| d["creationInfo"]["creators"] = serde_json::json!([])).contains("creators")
        );
    }

    proptest::proptest! {
        #[test]
        fn prop_parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
