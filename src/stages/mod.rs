//! The pure stages of a Mount: they take values and return values, with no clock, no
//! network, no environment, no gRPC and no metrics, so they are tested with plain data.
//!
//! - `flavour`: which provider a class is for (`vault` or `openbao`);
//! - `gojson`: Go's `encoding/json`, for files and versions;
//! - `plan`: the MountRequest becomes a typed, validated plan (attributes, tokens, the
//!   connection overrides, the objects);
//! - `policy`: the operator's limits on what a tenant's class may ask for;
//! - `answer`: Vault's answer to a read, as data;
//! - `render`: an object's files from its answer (secretKey, selector, allKeys, encodings);
//! - `template`: a template object's file, over its answer and the other objects' files;
//! - `version`: object versions (HMAC), the Go provider's byte for byte where it has the
//!   object;
//! - `manifest`: SecretProviderClass manifests checked offline (`check`), through `plan`
//!   and `policy`.

pub mod answer;
pub mod flavour;
pub mod gojson;
pub mod manifest;
pub mod plan;
pub mod policy;
pub mod render;
pub mod template;
pub mod version;
