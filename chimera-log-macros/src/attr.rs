//! Parsing of `#[log(...)]` attributes on the struct and on its fields.
//!
//! Simple rules (unknown or duplicate keys, malformed values, a key in the wrong place, two
//! attributes of one field that contradict each other) are checked here, while parsing; rules
//! that look at several fields at once live in `check.rs`.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Lit, LitStr, Token};

use crate::ctxt::Ctxt;

const CONTAINER_KEYS: &str = "`name`, `level`, `audit`, `key`, `route`, `crate`";
const FIELD_KEYS: &str = "`rename`, `skip`, `redact`, `display`";
const LEVELS: &str = "`trace`, `debug`, `info`, `warning` (or `warn`), `error`, `critical`";

/// The level written by `#[log(level = "...")]`.
#[derive(Clone, Copy)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "trace" => Some(Level::Trace),
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warning" | "warn" => Some(Level::Warning),
            "error" => Some(Level::Error),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }

    /// Name of the runtime's `Level` variant.
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Level::Trace => "Trace",
            Level::Debug => "Debug",
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
            Level::Critical => "Critical",
        }
    }
}

/// One attribute value, remembering where it was written so a duplicate is reported there.
pub(crate) struct Slot<T> {
    name: &'static str,
    value: Option<(Span, T)>,
}

impl<T> Slot<T> {
    fn new(name: &'static str) -> Self {
        Slot { name, value: None }
    }

    fn set(&mut self, cx: &Ctxt, span: Span, value: T) {
        if self.value.is_some() {
            cx.error_at(span, format_args!("duplicate attribute `{}`", self.name));
        } else {
            self.value = Some((span, value));
        }
    }

    /// Span of the key as the user wrote it, if the attribute is present.
    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(span, _)| *span)
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, value)| value)
    }

    pub(crate) fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

/// `#[log(...)]` on the struct.
pub(crate) struct ContainerAttrs {
    pub(crate) name: Slot<LitStr>,
    pub(crate) level: Slot<Level>,
    pub(crate) audit: Slot<()>,
    pub(crate) key: Slot<LitStr>,
    pub(crate) route: Slot<LitStr>,
    pub(crate) krate: Slot<syn::Path>,
}

/// `#[log(...)]` on a field.
pub(crate) struct FieldAttrs {
    pub(crate) rename: Slot<LitStr>,
    pub(crate) skip: Slot<()>,
    pub(crate) redact: Slot<()>,
    pub(crate) display: Slot<()>,
}

fn log_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("log"))
}

fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    let path = &meta.path;
    match path.get_ident() {
        Some(ident) => ident.to_string(),
        None => quote::quote!(#path).to_string().replace(' ', ""),
    }
}

/// Consumes whatever follows an unusable key (`= value` or `(...)`), so parsing goes on with the
/// next key and the user sees every error in the attribute at once.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<TokenStream>().map(drop)?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// `key = "string"`; `None` (with the error recorded) when the value is not a string literal.
fn string_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<Option<LitStr>> {
    if !meta.input.peek(Token![=]) {
        cx.error_at(meta.path.span(), format_args!("`{key}` expects a value: `{key} = \"...\"`"));
        skip_value(meta)?;
        return Ok(None);
    }
    match meta.value()?.parse::<Lit>()? {
        Lit::Str(lit) => Ok(Some(lit)),
        other => {
            cx.error_spanned_by(other, format_args!("`{key}` expects a string literal: `{key} = \"...\"`"));
            Ok(None)
        }
    }
}

/// A flag such as `audit` or `skip`; `false` (with the error recorded) when given a value.
fn flag(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<bool> {
    if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
        cx.error_at(meta.path.span(), format_args!("`{key}` takes no value: write `{key}` alone"));
        skip_value(meta)?;
        return Ok(false);
    }
    Ok(true)
}

fn non_empty(cx: &Ctxt, lit: LitStr, what: &str) -> Option<LitStr> {
    if lit.value().is_empty() {
        cx.error_spanned_by(&lit, format_args!("{what} must not be empty"));
        None
    } else {
        Some(lit)
    }
}

impl ContainerAttrs {
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = ContainerAttrs {
            name: Slot::new("name"),
            level: Slot::new("level"),
            audit: Slot::new("audit"),
            key: Slot::new("key"),
            route: Slot::new("route"),
            krate: Slot::new("crate"),
        };
        for attr in log_attrs(attrs) {
            let parsed = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                let span = meta.path.span();
                match key.as_str() {
                    "name" => {
                        if let Some(lit) = string_value(cx, &meta, "name")? {
                            if let Some(lit) = non_empty(cx, lit, "the event name") {
                                out.name.set(cx, span, lit);
                            }
                        }
                    }
                    "level" => {
                        if let Some(lit) = string_value(cx, &meta, "level")? {
                            match Level::parse(&lit.value()) {
                                Some(level) => out.level.set(cx, span, level),
                                None => cx.error_spanned_by(
                                    &lit,
                                    format_args!("unknown level {:?}; expected one of {LEVELS}", lit.value()),
                                ),
                            }
                        }
                    }
                    "audit" => {
                        if flag(cx, &meta, "audit")? {
                            out.audit.set(cx, span, ());
                        }
                    }
                    "key" => {
                        if let Some(lit) = string_value(cx, &meta, "key")? {
                            if let Some(lit) = non_empty(cx, lit, "the audit identity field") {
                                out.key.set(cx, span, lit);
                            }
                        }
                    }
                    "route" => {
                        if let Some(lit) = string_value(cx, &meta, "route")? {
                            if let Some(lit) = non_empty(cx, lit, "the route name") {
                                out.route.set(cx, span, lit);
                            }
                        }
                    }
                    "crate" => {
                        if let Some(lit) = string_value(cx, &meta, "crate")? {
                            match lit.parse::<syn::Path>() {
                                Ok(path) => out.krate.set(cx, span, path),
                                Err(_) => cx.error_spanned_by(
                                    &lit,
                                    format_args!(
                                        "`crate` expects a path such as \"::my_log\", found {:?}",
                                        lit.value()
                                    ),
                                ),
                            }
                        }
                    }
                    "rename" | "skip" | "redact" | "display" => {
                        cx.error_at(span, format_args!("`{key}` belongs on a field, not on the struct"));
                        skip_value(&meta)?;
                    }
                    _ => {
                        cx.error_at(span, format_args!("unknown attribute `{key}`; expected one of {CONTAINER_KEYS}"));
                        skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(error) = parsed {
                cx.syn_error(error);
            }
        }
        if let (Some(key_span), false) = (out.key.span(), out.audit.is_set()) {
            cx.error_at(
                key_span,
                "`key` names the identity field of an audit event and needs `audit`: `#[log(audit, key = \"...\")]`",
            );
        }
        out
    }
}

impl FieldAttrs {
    pub(crate) fn parse(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = FieldAttrs {
            rename: Slot::new("rename"),
            skip: Slot::new("skip"),
            redact: Slot::new("redact"),
            display: Slot::new("display"),
        };
        for attr in log_attrs(attrs) {
            let parsed = attr.parse_nested_meta(|meta| {
                let key = key_name(&meta);
                let span = meta.path.span();
                match key.as_str() {
                    "rename" => {
                        if let Some(lit) = string_value(cx, &meta, "rename")? {
                            out.rename.set(cx, span, lit);
                        }
                    }
                    "skip" => {
                        if flag(cx, &meta, "skip")? {
                            out.skip.set(cx, span, ());
                        }
                    }
                    "redact" => {
                        if flag(cx, &meta, "redact")? {
                            out.redact.set(cx, span, ());
                        }
                    }
                    "display" => {
                        if flag(cx, &meta, "display")? {
                            out.display.set(cx, span, ());
                        }
                    }
                    "name" | "level" | "audit" | "key" | "route" | "crate" => {
                        cx.error_at(span, format_args!("`{key}` belongs on the struct, not on a field"));
                        skip_value(&meta)?;
                    }
                    _ => {
                        cx.error_at(
                            span,
                            format_args!("unknown field attribute `{key}`; expected one of {FIELD_KEYS}"),
                        );
                        skip_value(&meta)?;
                    }
                }
                Ok(())
            });
            if let Err(error) = parsed {
                cx.syn_error(error);
            }
        }
        out.reject_contradictions(cx);
        out
    }

    /// `skip` writes nothing, so nothing else can apply; `redact` hides the value `display` would show.
    fn reject_contradictions(&self, cx: &Ctxt) {
        if self.skip.is_set() {
            for (name, span) in
                [("rename", self.rename.span()), ("redact", self.redact.span()), ("display", self.display.span())]
            {
                if let Some(span) = span {
                    cx.error_at(span, format_args!("`{name}` has no effect on a field marked `skip`"));
                }
            }
        } else if let (Some(_), Some(span)) = (self.redact.span(), self.display.span()) {
            cx.error_at(span, "`display` cannot be combined with `redact`: a redacted field is never shown");
        }
    }
}
