//! The derive input as the rest of the derive sees it: a struct with named fields (or a unit
//! struct), its attributes parsed, and references to the user's tokens kept for error spans.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, Type};

use crate::attr::{ContainerAttrs, FieldAttrs};
use crate::ctxt::Ctxt;

pub(crate) struct Input<'a> {
    pub(crate) original: &'a DeriveInput,
    pub(crate) attrs: ContainerAttrs,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

impl Field<'_> {
    /// The field's name without `r#`, as the user would spell it in `key = "..."`.
    pub(crate) fn name(&self) -> String {
        let name = self.ident.to_string();
        name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
    }

    /// The JSON key: `rename` if given, else the field's name.
    pub(crate) fn json_key(&self) -> String {
        match self.attrs.rename.get() {
            Some(lit) => lit.value(),
            None => self.name(),
        }
    }

    /// Where the JSON key was written: the `rename` literal, else the field's name.
    pub(crate) fn json_key_span(&self) -> Span {
        match self.attrs.rename.get() {
            Some(lit) => lit.span(),
            None => self.ident.span(),
        }
    }

    /// Whether the value is written at all.
    pub(crate) fn is_written(&self) -> bool {
        !self.attrs.skip.is_set()
    }
}

impl<'a> Input<'a> {
    /// Parses the derive input; `None` when its shape cannot carry an event (errors in `cx`).
    pub(crate) fn from_syn(cx: &Ctxt, input: &'a DeriveInput) -> Option<Self> {
        let attrs = ContainerAttrs::parse(cx, &input.attrs);
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named
                    .named
                    .iter()
                    .map(|field| Field {
                        ident: field.ident.as_ref().expect("syn gives every named field an ident"),
                        ty: &field.ty,
                        attrs: FieldAttrs::parse(cx, &field.attrs),
                    })
                    .collect(),
                Fields::Unit => Vec::new(),
                Fields::Unnamed(unnamed) => {
                    cx.error_at(
                        unnamed.span(),
                        "`LogEvent` cannot be derived for a tuple struct: context keys come from field names; use named fields",
                    );
                    return None;
                }
            },
            Data::Enum(data) => {
                cx.error_at(
                    data.enum_token.span(),
                    "`LogEvent` cannot be derived for an enum: an event is a struct with named fields (or a unit struct)",
                );
                return None;
            }
            Data::Union(data) => {
                cx.error_at(
                    data.union_token.span(),
                    "`LogEvent` cannot be derived for a union: an event is a struct with named fields (or a unit struct)",
                );
                return None;
            }
        };
        Some(Input { original: input, attrs, fields })
    }
}
