//! The respond stage: every object rendered from its answer (`stages::render`), then the
//! templates over the others' files (`stages::template`), each versioned
//! (`stages::version`): the complete volume, or an error and no files. Pure.

use super::error::MountError;
use crate::secret::SecretBytes;
use crate::stages::answer::SecretResponse;
use crate::stages::plan::{MountPlan, ObjectKind, ObjectSpec, VersionInput};
use crate::stages::render;
use crate::stages::template::{self, ObjectText};
use crate::stages::version::VersionKey;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The files of a volume, complete, with a version per file.
#[derive(Debug, Default)]
pub struct Volume {
    pub files: Vec<VolumeFile>,
    /// `(id, version)`: one per file, the id its path.
    pub versions: Vec<(String, String)>,
}

/// One file of a volume.
#[derive(Debug)]
pub struct VolumeFile {
    /// Relative path in the volume.
    pub path: String,
    /// Permission bits, 0 to 0o777.
    pub mode: u32,
    pub contents: SecretBytes,
}

/// Renders every object and versions it: the complete answer. Objects that select from
/// their read come first; templates then see their files by name.
pub fn respond(
    plan: &MountPlan,
    answers: &[Arc<SecretResponse>],
    key: &VersionKey,
    limits: &template::Limits,
) -> Result<Volume, MountError> {
    let answer_of = |object: &ObjectSpec| -> Result<Option<&SecretResponse>, MountError> {
        match object.read {
            None => Ok(None),
            Some(r) => answers
                .get(r)
                .map(|a| Some(&**a))
                .ok_or_else(|| MountError::Internal("object refers to a missing read".into())),
        }
    };
    let mut rendered: Vec<Vec<(String, SecretBytes)>> = vec![Vec::new(); plan.objects.len()];
    let mut texts: BTreeMap<String, ObjectText> = BTreeMap::new();
    let templates = plan.has_templates();
    for (i, object) in plan.objects.iter().enumerate() {
        if matches!(object.kind, ObjectKind::Template(_)) {
            continue;
        }
        let answer = answer_of(object)?
            .ok_or_else(|| MountError::Internal("object without a read".into()))?;
        let files = render::render(object, answer).map_err(|source| MountError::Render {
            object: object.name.clone(),
            source,
        })?;
        if templates {
            texts.insert(object.name.clone(), object_text(object, &files));
        }
        rendered[i] = files;
    }
    let mut fuel = template::Fuel(limits.fuel);
    for (i, object) in plan.objects.iter().enumerate() {
        let ObjectKind::Template(source) = &object.kind else {
            continue;
        };
        let ctx = template::Context {
            answer: answer_of(object)?,
            objects: &texts,
        };
        let bytes = template::render(source, &ctx, limits, &mut fuel).map_err(|source| {
            MountError::Template {
                object: object.name.clone(),
                source,
            }
        })?;
        rendered[i] = vec![(object.name.clone(), SecretBytes::new(bytes))];
    }

    let mut files = Vec::with_capacity(plan.objects.len());
    let mut versions = Vec::with_capacity(plan.objects.len());
    for (object, object_files) in plan.objects.iter().zip(rendered) {
        let dir = matches!(object.kind, ObjectKind::AllKeys(_));
        for (path, content) in object_files {
            let version = match &object.version {
                VersionInput::Go(json) => key.go_version(json, content.expose()),
                // A directory's files are versioned one by one, each with its own path.
                VersionInput::Own(config) if dir => {
                    key.own_version(&[config.as_bytes(), path.as_bytes()], content.expose())
                }
                VersionInput::Own(config) => {
                    key.own_version(&[config.as_bytes()], content.expose())
                }
            };
            versions.push((path.clone(), version));
            files.push(VolumeFile {
                path,
                mode: object.mode,
                contents: content,
            });
        }
    }
    Ok(Volume { files, versions })
}

/// An object's files as a template sees them.
fn object_text(object: &ObjectSpec, files: &[(String, SecretBytes)]) -> ObjectText {
    match object.kind {
        ObjectKind::AllKeys(_) => {
            let prefix = format!("{}/", object.name);
            ObjectText::Dir(
                files
                    .iter()
                    .map(|(path, c)| {
                        let key = path.strip_prefix(&prefix).unwrap_or(path);
                        (key.to_string(), c.expose().to_vec())
                    })
                    .collect(),
            )
        }
        _ => ObjectText::File(
            files
                .first()
                .map(|(_, c)| c.expose().to_vec())
                .unwrap_or_default(),
        ),
    }
}
