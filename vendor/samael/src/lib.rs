// polis-gateway: upstream's own warnings are left as they are (vendor/samael/POLIS-PATCH.md).
#![allow(unused_imports, dead_code, mismatched_lifetime_syntaxes)]
pub mod attribute;
pub mod crypto;
pub mod idp;
pub mod key_info;
pub mod metadata;
pub mod schema;
pub mod service_provider;
pub mod signature;

pub mod traits;

#[macro_use]
extern crate derive_builder;
