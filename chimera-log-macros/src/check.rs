//! Rules that look at several fields at once: unique JSON keys and the audit identity field.

use std::collections::BTreeMap;

use crate::ast::Input;
use crate::ctxt::Ctxt;

pub(crate) fn check(cx: &Ctxt, input: &Input<'_>) {
    check_unique_keys(cx, input);
    check_audit_identity(cx, input);
}

/// Two written fields with one JSON key would make a line with a duplicate key, which JSON
/// readers resolve differently; the error lands on the second.
fn check_unique_keys(cx: &Ctxt, input: &Input<'_>) {
    let mut seen = BTreeMap::new();
    for field in input.fields.iter().filter(|field| field.is_written()) {
        let key = field.json_key();
        if let Some(first) = seen.insert(key.clone(), field.name()) {
            cx.error_at(
                field.json_key_span(),
                format_args!("duplicate JSON key {key:?}: field `{first}` already writes it"),
            );
        }
    }
}

/// An audit record must say where it stands on the chain: a written, unredacted identity field.
fn check_audit_identity(cx: &Ctxt, input: &Input<'_>) {
    let Some(audit_span) = input.attrs.audit.span() else {
        return;
    };
    let (wanted, span) = match input.attrs.key.get() {
        Some(lit) => (lit.value(), lit.span()),
        None => ("block_number".to_owned(), audit_span),
    };
    match input.fields.iter().find(|field| field.name() == wanted) {
        None if input.attrs.key.is_set() => cx.error_at(
            span,
            format_args!("`key` names the audit identity field `{wanted}`, but the struct has no field `{wanted}`"),
        ),
        None => cx.error_at(
            span,
            "`#[log(audit)]` needs the identity field `block_number`: add a `block_number` field or name another with `key = \"...\"`",
        ),
        Some(field) => {
            if let Some(skip) = field.attrs.skip.span() {
                cx.error_at(skip, format_args!("the audit identity field `{wanted}` cannot be skipped"));
            }
            if let Some(redact) = field.attrs.redact.span() {
                cx.error_at(redact, format_args!("the audit identity field `{wanted}` cannot be redacted"));
            }
        }
    }
}
