//! The stub impl emitted next to compile errors, so that one mistake in the derive does not
//! also make every `emit!` of the type fail with "`LogEvent` is not implemented".

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// `krate` is the path of the crate the derive was re-exported from.
pub(crate) fn stub_impl(input: &DeriveInput, krate: &TokenStream) -> TokenStream {
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[allow(unused_qualifications, deprecated, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::LogEvent for #ident #ty_generics #where_clause {
                const NAME: &'static #krate::__private::str = "";
                const LEVEL: #krate::Level = #krate::Level::Info;
                const ROUTES: #krate::Routes = #krate::Routes::GENERAL;

                fn write_context(&self, _: &mut #krate::ContextWriter<'_>) {
                    #krate::__private::unreachable!("the derive reported a compile error for this type")
                }
            }
        };
    }
}
