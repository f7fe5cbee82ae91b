//! Generation of the `LogEvent` impl: the context object is written with pre-escaped key
//! literals, and each value goes through `Serialize` (or `Display`) straight into the line.

use std::collections::BTreeSet;

use proc_macro2::{Literal, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{DeriveInput, Ident, Type};

use crate::ast::{Field, Input};
use crate::case::{json_escape, snake_case};
use crate::check;
use crate::ctxt::Ctxt;
use crate::fallback;

/// Which crate the generated code names when `#[log(crate = ...)]` is not given: the one the
/// user depends on, which re-exported the derive.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Home {
    /// `::chimera_log_runtime`.
    Runtime,
    /// `::chimera_log`, the facade.
    Facade,
}

/// Parse, validate, expand; on any error, the errors plus a stub impl.
pub(crate) fn derive(input: &DeriveInput, home: Home) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = Input::from_syn(&cx, input);
    if let Some(parsed) = &parsed {
        check::check(&cx, parsed);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(parsed)) => impl_log_event(&parsed, &runtime_path(parsed.attrs.krate.get(), home)),
        (Err(errors), parsed) => {
            // An enum or tuple struct is refused before its attributes are kept: read `crate`
            // again, so the stub names the runtime the user named and the error stays one.
            let krate = match &parsed {
                Some(parsed) => parsed.attrs.krate.get().cloned(),
                None => {
                    let scratch = Ctxt::new();
                    let attrs = crate::attr::ContainerAttrs::parse(&scratch, &input.attrs);
                    // Any error in them is in `errors` already.
                    let _ = scratch.check();
                    attrs.krate.get().cloned()
                }
            };
            let mut out = errors.to_compile_error();
            out.extend(fallback::stub_impl(input, &runtime_path(krate.as_ref(), home)));
            out
        }
        (Ok(()), None) => unreachable!("Input::from_syn records an error whenever it returns None"),
    }
}

/// The path given with `#[log(crate = "...")]`, else the `home` crate's.
fn runtime_path(krate: Option<&syn::Path>, home: Home) -> TokenStream {
    match (krate, home) {
        (Some(path), _) => path.to_token_stream(),
        (None, Home::Runtime) => quote!(::chimera_log_runtime),
        (None, Home::Facade) => quote!(::chimera_log),
    }
}

fn impl_log_event(input: &Input<'_>, krate: &TokenStream) -> TokenStream {
    let ident = &input.original.ident;

    let name = match input.attrs.name.get() {
        Some(lit) => lit.value(),
        None => snake_case(&ident.to_string()),
    };
    let level = format_ident!("{}", input.attrs.level.get().map_or("Info", |level| level.variant()));
    let audit = input.attrs.audit.is_set().then(|| {
        // The identity field's JSON key travels in the line when it is not `block_number`, so that
        // the audit store can index it (a missing field is the check's error, not this one's).
        let wanted = input.attrs.key.get().map_or_else(|| "block_number".to_owned(), |lit| lit.value());
        let json_key = input.fields.iter().find(|field| field.name() == wanted).map(|field| field.json_key());
        match json_key.filter(|key| key != "block_number") {
            Some(key) => quote!(.with_audit().with_audit_key(#key)),
            None => quote!(.with_audit()),
        }
    });
    let route = input.attrs.route.get().map(|lit| quote!(.with_route(#lit)));

    let mut generics = input.original.generics.clone();
    // A field type naming a type or const parameter needs a bound; `[u8; N]` is `Serialize`
    // only once `N` is known, so const parameters count too.
    let type_params: BTreeSet<String> = generics
        .type_params()
        .map(|param| param.ident.to_string())
        .chain(generics.const_params().map(|param| param.ident.to_string()))
        .collect();
    let mut writes = Vec::new();
    let mut captures = Vec::new();
    let mut capture_lens = Vec::new();
    let mut replays = Vec::new();
    let mut bounds = Vec::new();
    let mut first = true;
    for field in input.fields.iter().filter(|field| field.is_written()) {
        // The logger writes the braces of the context object; keys after the first carry the comma.
        let prefix = format!("{}\"{}\":", if first { "" } else { "," }, json_escape(&field.json_key()));
        first = false;
        let prefix = Literal::byte_string(prefix.as_bytes());
        writes.push(quote!(#krate::__private::write_raw(__writer, #prefix);));
        writes.push(write_value(krate, field));
        replays.push(quote!(#krate::__private::write_raw(__writer, #prefix);));
        let generic = mentions_any(field.ty.to_token_stream(), &type_params);
        let (capture, replay) = capture_and_replay(krate, field, generic);
        capture_lens.push(capture_len(krate, field, generic));
        captures.push(capture);
        replays.push(replay);
        if field.attrs.redact.is_set() {
            continue;
        }
        if mentions_any(field.ty.to_token_stream(), &type_params) {
            let ty = field.ty;
            let bound = if field.attrs.display.is_set() {
                quote_spanned!(ty.span()=> #ty: #krate::__private::Display)
            } else {
                quote_spanned!(ty.span()=> #ty: #krate::__private::Serialize)
            };
            bounds.push(bound);
        }
    }
    if !bounds.is_empty() {
        let where_clause = generics.make_where_clause();
        for bound in bounds {
            where_clause.predicates.push(syn::parse_quote!(#bound));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // Deferred encoding (the runtime's `deferred` module): general events leave a record of
    // their fields, and the writer thread replays it into the line `write_context` would write.
    // The replay function reads only the record, so it names none of the type's parameters.
    // Audit events are sealed on the caller's thread and never deferred.
    let (replay_items, deferred) = if input.attrs.audit.is_set() {
        (TokenStream::new(), TokenStream::new())
    } else {
        let items = quote! {
            fn __chimera_replay(
                __replayer: &mut #krate::__private::Replayer<'_>,
                __writer: &mut #krate::ContextWriter<'_>,
            ) {
                #(#replays)*
            }
            static __CHIMERA_REPLAY: #krate::__private::Replay =
                #krate::__private::Replay::new(#name, __chimera_replay);
        };
        // A capture that runs no code of the user's (every field copied by the capture's own
        // code) says how many bytes it writes, and is written straight into the queue.
        let capture_len = capture_lens.into_iter().collect::<Option<Vec<_>>>().map(|lens| {
            quote! {
                #[inline]
                fn __capture_len(&self) -> ::core::option::Option<usize> {
                    ::core::option::Option::Some(0 #(+ #lens)*)
                }
            }
        });
        let methods = quote! {
            const __REPLAY: ::core::option::Option<&'static #krate::__private::Replay> =
                ::core::option::Option::Some(&__CHIMERA_REPLAY);

            #[inline]
            fn __capture(&self, __capture: &mut #krate::__private::Capture<'_>) {
                #(#captures)*
            }

            #capture_len
        };
        (items, methods)
    };

    quote! {
        #[allow(unused_qualifications, non_upper_case_globals, deprecated, clippy::all)]
        const _: () = {
            #replay_items

            #[automatically_derived]
            impl #impl_generics #krate::LogEvent for #ident #ty_generics #where_clause {
                const NAME: &'static #krate::__private::str = #name;
                const LEVEL: #krate::Level = #krate::Level::#level;
                const ROUTES: #krate::Routes = #krate::Routes::GENERAL #audit #route;

                #[inline]
                fn write_context(&self, __writer: &mut #krate::ContextWriter<'_>) {
                    #(#writes)*
                }

                #deferred
            }
        };
    }
}

/// For deferred encoding: the statement copying one field into the record, and the one that
/// reads it back and writes its value exactly as [`write_value`] does. Fields on the fast paths
/// are copied bare; any other is given to the runtime's `Value`, which copies a type it knows
/// and otherwise encodes the field now with the very call `write_context` makes (so a type
/// missing `Serialize` or `Display` is one error, not two). A field whose type names one of the
/// struct's type parameters is always encoded now: which impl applies is decided where the
/// capture is compiled, and there the parameter's type is not known.
fn capture_and_replay(krate: &TokenStream, field: &Field<'_>, generic: bool) -> (TokenStream, TokenStream) {
    let ident: &Ident = field.ident;
    let ty: &Type = field.ty;
    let p = quote!(#krate::__private);
    if field.attrs.redact.is_set() {
        return (TokenStream::new(), quote!(#p::write_redacted(__writer);));
    }
    let replay_value = quote!(__replayer.value(__writer););
    let write = write_value(krate, field);
    if field.attrs.display.is_set() || generic {
        return (quote!(__capture.encoded(|__writer| { #write });), replay_value);
    }
    match fast_path(ty) {
        FastPath::Str => (
            quote_spanned!(ty.span()=> __capture.str(self.#ident);),
            quote!(#p::write_str_bytes(__writer, __replayer.str_bytes());),
        ),
        FastPath::Integer => (
            quote_spanned!(ty.span()=> __capture.scalar(self.#ident);),
            quote!(#p::write_integer(__writer, __replayer.scalar::<#ty>());),
        ),
        FastPath::Serialize => (
            quote! {{
                #[allow(unused_imports)]
                use #p::{CaptureEncoded as _, CaptureValue as _};
                (&#p::Value(&self.#ident)).__chimera_capture(__capture, |__writer| { #write });
            }},
            replay_value,
        ),
    }
}

/// The expression for the bytes one field's capture writes, within `__capture_len` (which
/// returns `None` through `?`): for `&str` (core's: told from a type of the user's named `str`
/// where the event is compiled, by `StrLen`) and primitive integers (copied by the capture's own
/// code) and redacted fields (nothing), a length; for a field through `Value`, the length its
/// `CaptureValue` impl gives, or `None` from `CaptureEncoded` (the type's `Serialize` would
/// run). `None` here, for the whole event, for `display` fields and fields of a type parameter,
/// whose capture always runs the user's code.
fn capture_len(krate: &TokenStream, field: &Field<'_>, generic: bool) -> Option<TokenStream> {
    let ident: &Ident = field.ident;
    let ty: &Type = field.ty;
    let p = quote!(#krate::__private);
    if field.attrs.redact.is_set() {
        return Some(quote!(0));
    }
    if field.attrs.display.is_set() || generic {
        return None;
    }
    Some(match fast_path(ty) {
        // Only core's `str`: a type of the user's named `str` is taken through its `Deref`.
        FastPath::Str => quote! {{
            #[allow(unused_imports)]
            use #p::{CoreStr as _, OtherStr as _};
            (&#p::StrLen(&self.#ident)).__chimera_str_len()?
        }},
        FastPath::Integer => quote!(<#ty as #p::Scalar>::SIZE),
        FastPath::Serialize => quote! {{
            #[allow(unused_imports)]
            use #p::{CaptureEncoded as _, CaptureValue as _};
            (&#p::Value(&self.#ident)).__chimera_len()?
        }},
    })
}

/// The call writing one value, spanned at the field's type so a missing `Serialize` or `Display`
/// is reported on that field.
fn write_value(krate: &TokenStream, field: &Field<'_>) -> TokenStream {
    let ident: &Ident = field.ident;
    let ty: &Type = field.ty;
    if field.attrs.redact.is_set() {
        // The value is part of the event even though it is never shown: reading it keeps
        // `dead_code` quiet about a field that exists to be logged.
        quote! {
            let _ = &self.#ident;
            #krate::__private::write_redacted(__writer);
        }
    } else if field.attrs.display.is_set() {
        quote_spanned!(ty.span()=> #krate::__private::write_display(__writer, &self.#ident);)
    } else {
        match fast_path(ty) {
            FastPath::Str => quote_spanned!(ty.span()=> #krate::__private::write_str(__writer, self.#ident);),
            FastPath::Integer => quote_spanned!(ty.span()=> #krate::__private::write_integer(__writer, self.#ident);),
            FastPath::Serialize => {
                quote_spanned!(ty.span()=> #krate::__private::write_serialize(__writer, &self.#ident);)
            }
        }
    }
}

/// Field types written without going through serde: the same JSON, fewer steps.
enum FastPath {
    /// `&str` or `&'a str`.
    Str,
    /// A primitive integer named by its keyword (`u64`, `i128`, ...).
    Integer,
    Serialize,
}

/// Recognises the types of [`FastPath`] by how they are spelt. Anything else, including an alias
/// of one of them, takes the `Serialize` path, which writes the same JSON.
fn fast_path(ty: &Type) -> FastPath {
    const INTEGERS: &[&str] = &["u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize"];
    match ty {
        Type::Reference(reference) if reference.mutability.is_none() => match &*reference.elem {
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => FastPath::Str,
            _ => FastPath::Serialize,
        },
        Type::Path(path) if path.qself.is_none() => match path.path.get_ident() {
            Some(ident) if INTEGERS.contains(&ident.to_string().as_str()) => FastPath::Integer,
            _ => FastPath::Serialize,
        },
        _ => FastPath::Serialize,
    }
}

/// Whether a type mentions one of the struct's type parameters, which then needs a bound.
fn mentions_any(tokens: TokenStream, params: &BTreeSet<String>) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => params.contains(&ident.to_string()),
        TokenTree::Group(group) => mentions_any(group.stream(), params),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stub emitted beside the "cannot be derived for an enum" error names the runtime
    /// path the user gave, so a renamed runtime does not add an unresolved-path error.
    #[test]
    fn the_stub_for_a_refused_enum_or_tuple_struct_keeps_the_crate_attribute() {
        for input in [
            quote!(
                #[log(crate = "::chimera")]
                enum Ev {
                    A,
                }
            ),
            quote!(
                #[log(crate = "::chimera")]
                struct Ev(u64);
            ),
        ] {
            let input: DeriveInput = syn::parse2(input).unwrap();
            let out = derive(&input, Home::Runtime).to_string();
            assert_eq!(out.matches("compile_error").count(), 1, "{out}");
            assert!(out.contains(":: chimera :: LogEvent"), "{out}");
            assert!(!out.contains("chimera_log_runtime"), "{out}");
        }
    }
}
