//! Attribute macros for wirecall providers: `#[provider]`, `#[remote]`, `#[on_finalize]` and friends.
//!
//! The one entry point is [`macro@provider`], placed on an inherent `impl` block. Inside that
//! block, these helper attributes mark methods (they are consumed by `#[provider]` and need no
//! import):
//!
//! | attribute | meaning |
//! |---|---|
//! | `#[remote]` | callable remotely as `service + "_" + method name` |
//! | `#[remote(name = "x")]` | callable as `service + "_x"` (Margo's `rpc_name`) |
//! | `#[remote(oneway)]` | never answered, not even on error (Margo's `disable_response`); its calls run off the connection's reader, so they never delay the caller's next call (Pyro's `ONEWAY_THREADED`) |
//! | `#[remote(idempotent)]` | safe to run twice: the generated client sends it again after a lost connection (up to the proxy's `max_retries`) |
//! | `#[remote(blocking)]` | the method blocks its thread (file or database I/O, long computation, `std::thread::sleep`): its calls always run on tokio's blocking pool, never on the connection's reader or a runtime worker; combines with the others (`#[remote(name = "x", blocking)]`) |
//! | `#[attribute]` | a getter `fn(&self) -> T` exposed as remote attribute (Pyro property) |
//! | `#[attribute(set)]` / `#[attribute(set, name = "x")]` | a setter `fn(&self, value: T)`; the default name drops a `set_` prefix |
//! | `#[on_prefinalize]` | runs when the server finalizes, before connections close (may make calls) |
//! | `#[on_finalize]` | runs last during finalize |
//! | `#[on_connect]` / `#[on_disconnect]` | runs when a connection opens / closes; takes `&ConnectionInfo` |
//!
//! A remote method takes `&self`, may be `async`, takes owned arguments that implement
//! `serde::Deserialize`, and returns nothing, `T: Serialize`, or `Result<T, E>` where `E`
//! implements `Display` (and, when it implements `std::error::Error`, its source chain is
//! sent too). One parameter may have type `CallContext` (caller address, annotations), one
//! may have type `Responder` (the method answers later through it, PyMargo's
//! `handle.respond`), and one may have type `Streaming<T>`: the call's argument stream, items
//! the caller sends after the call (client → server streams; with an `ItemStream` result, a
//! bidirectional stream). The generated client takes it as its last parameter, an
//! `impl Stream<Item = T>`.
//!
//! The macro also generates a typed client, `<Type>Client`, with one `async` method per remote
//! method returning `Result<T, wirecall::Error>`. Over a proxy in Pyro mode (a `PYRO:` URI)
//! the same client calls a Python Pyro5 object: `service_method` is called as `method`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, LitStr,
    Pat, PathArguments, ReturnType, Type,
};

/// Turns an inherent `impl` block into a wirecall provider.
///
/// Arguments: `service = "name"` (required: the prefix of every RPC name) and optionally
/// `aliases = ["other", ...]` (further service names the server answers to, as RPyC's
/// `ALIASES`).
///
/// ```ignore
/// #[wirecall::provider(service = "my_service")]
/// impl MyProvider {
///     #[remote]
///     async fn say_hello(&self, firstname: String, lastname: String) -> String {
///         format!("Hello {firstname} {lastname}")
///     }
///     #[remote(name = "notify", oneway)]
///     fn notify(&self, event: String) {}
///     #[on_finalize]
///     fn finalize(&self) {}
/// }
/// ```
#[proc_macro_attribute]
pub fn provider(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut args = ProviderArgs::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("service") {
            args.service = Some(meta.value()?.parse::<LitStr>()?);
            Ok(())
        } else if meta.path.is_ident("aliases") {
            let value = meta.value()?;
            let content;
            syn::bracketed!(content in value);
            let list = content.parse_terminated(|p| p.parse::<LitStr>(), syn::Token![,])?;
            args.aliases = list.into_iter().collect();
            Ok(())
        } else {
            Err(meta.error("unknown #[provider] argument; expected `service = \"...\"` or `aliases = [\"...\"]`"))
        }
    });
    parse_macro_input!(attr with parser);
    let item = parse_macro_input!(item as ItemImpl);
    match expand(args, item) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

#[derive(Default)]
struct ProviderArgs {
    service: Option<LitStr>,
    aliases: Vec<LitStr>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ParamRole {
    Value,
    Context,
    Responder,
    /// `Streaming<T>`: the call's argument stream (SPEC §6.13).
    Upload,
}

struct Param {
    ident: syn::Ident,
    ty: Type,
    role: ParamRole,
}

enum Kind {
    Method { oneway: bool, blocking: bool },
    Getter,
    Setter,
}

struct Remote {
    /// `#[remote(idempotent)]`: the generated client retries it after a lost connection.
    idempotent: bool,
    fn_ident: syn::Ident,
    name: String,
    kind: Kind,
    is_async: bool,
    params: Vec<Param>,
    output: Output,
    span: Span,
}

enum Output {
    Unit,
    Plain(Type),
    Result(Type),
    /// `ItemStream<T>`: a streamed result of `T` items.
    Stream(Type),
    /// `Result<ItemStream<T>, E>`.
    ResultStream(Type),
}

/// The `T` of an `ItemStream<T>` return type.
fn item_stream_type(ty: &Type) -> Option<Type> {
    if type_last_ident(ty).as_deref() != Some("ItemStream") {
        return None;
    }
    responder_result(ty)
}

#[derive(Default)]
struct Hooks {
    prefinalize: Vec<(syn::Ident, bool)>,
    finalize: Vec<(syn::Ident, bool)>,
    connect: Vec<syn::Ident>,
    disconnect: Vec<syn::Ident>,
}

fn last_ident(path: &syn::Path) -> Option<String> {
    path.segments.last().map(|s| s.ident.to_string())
}

fn attr_name(a: &Attribute) -> Option<String> {
    last_ident(a.path())
}

const OUR_ATTRS: &[&str] = &[
    "remote",
    "attribute",
    "on_prefinalize",
    "on_finalize",
    "on_connect",
    "on_disconnect",
];

fn type_last_ident(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) => last_ident(&p.path),
        Type::Reference(r) => type_last_ident(&r.elem),
        _ => None,
    }
}

fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    if seg.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &seg.arguments else {
        return None;
    };
    ab.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

/// The `T` of a `Responder<T>` parameter.
fn responder_result(ty: &Type) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let seg = p.path.segments.last()?;
    let PathArguments::AngleBracketed(ab) = &seg.arguments else {
        return None;
    };
    ab.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    })
}

fn parse_remote(f: &ImplItemFn, attr: &Attribute, is_attribute: bool) -> syn::Result<Remote> {
    let mut name: Option<String> = None;
    let mut oneway = false;
    let mut idempotent = false;
    let mut blocking = false;
    let mut set = false;
    if !matches!(attr.meta, syn::Meta::Path(_)) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") || meta.path.is_ident("rpc_name") {
                name = Some(meta.value()?.parse::<LitStr>()?.value());
                Ok(())
            } else if !is_attribute
                && (meta.path.is_ident("oneway") || meta.path.is_ident("disable_response"))
            {
                oneway = true;
                Ok(())
            } else if !is_attribute && meta.path.is_ident("idempotent") {
                idempotent = true;
                Ok(())
            } else if !is_attribute && meta.path.is_ident("blocking") {
                blocking = true;
                Ok(())
            } else if is_attribute && meta.path.is_ident("set") {
                set = true;
                Ok(())
            } else if is_attribute {
                Err(meta.error("unknown #[attribute] argument; expected `set` or `name = \"...\"`"))
            } else {
                Err(meta.error(
                    "unknown #[remote] argument; expected `name = \"...\"`, `oneway`, `idempotent` or `blocking`",
                ))
            }
        })?;
    }
    let sig = &f.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "remote methods cannot be generic: the server must know the argument types",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new(
                sig.span(),
                "remote methods take `&self` (providers are shared between connections; use interior mutability)",
            ))
        }
    }
    let mut params = Vec::new();
    for (i, arg) in inputs.enumerate() {
        let FnArg::Typed(pt) = arg else {
            return Err(syn::Error::new(arg.span(), "unexpected receiver"));
        };
        let ident = match &*pt.pat {
            Pat::Ident(pi) => pi.ident.clone(),
            _ => format_ident!("arg{}", i),
        };
        let role = match type_last_ident(&pt.ty).as_deref() {
            Some("CallContext") => ParamRole::Context,
            Some("Responder") => ParamRole::Responder,
            Some("Streaming") => ParamRole::Upload,
            _ => ParamRole::Value,
        };
        if role == ParamRole::Value {
            if let Type::Reference(_) = &*pt.ty {
                return Err(syn::Error::new(
                    pt.ty.span(),
                    "remote method arguments must be owned types (e.g. `String`, not `&str`)",
                ));
            }
        }
        params.push(Param {
            ident,
            ty: (*pt.ty).clone(),
            role,
        });
    }
    let output = match &sig.output {
        ReturnType::Default => Output::Unit,
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => match item_stream_type(&ok) {
                Some(item) => Output::ResultStream(item),
                None => Output::Result(ok),
            },
            None => match &**ty {
                Type::Tuple(t) if t.elems.is_empty() => Output::Unit,
                _ => match item_stream_type(ty) {
                    Some(item) => Output::Stream(item),
                    None => Output::Plain((**ty).clone()),
                },
            },
        },
    };
    let fn_name = sig.ident.to_string();
    let fn_name = fn_name.strip_prefix("r#").unwrap_or(&fn_name).to_string();
    let kind = if is_attribute {
        let values = params.iter().filter(|p| p.role == ParamRole::Value).count();
        if set {
            if values != 1 {
                return Err(syn::Error::new(
                    sig.span(),
                    "an #[attribute(set)] method takes exactly one value argument",
                ));
            }
            Kind::Setter
        } else {
            if values != 0 {
                return Err(syn::Error::new(
                    sig.span(),
                    "an #[attribute] getter takes no arguments besides &self (use #[attribute(set)] for setters)",
                ));
            }
            Kind::Getter
        }
    } else {
        Kind::Method { oneway, blocking }
    };
    let uploads = params
        .iter()
        .filter(|p| p.role == ParamRole::Upload)
        .count();
    if uploads > 1 {
        return Err(syn::Error::new(
            sig.span(),
            "at most one Streaming parameter (a call has one argument stream)",
        ));
    }
    if uploads == 1 && !matches!(kind, Kind::Method { oneway: false, .. }) {
        return Err(syn::Error::new(
            sig.span(),
            "a Streaming parameter needs a two-way #[remote] method (a oneway call or an attribute has no argument stream)",
        ));
    }
    if params
        .iter()
        .filter(|p| p.role == ParamRole::Responder)
        .count()
        > 1
        || params
            .iter()
            .filter(|p| p.role == ParamRole::Context)
            .count()
            > 1
    {
        return Err(syn::Error::new(
            sig.span(),
            "at most one CallContext and one Responder parameter",
        ));
    }
    let name = name.unwrap_or_else(|| match kind {
        Kind::Setter => fn_name.strip_prefix("set_").unwrap_or(&fn_name).to_string(),
        _ => fn_name.clone(),
    });
    Ok(Remote {
        idempotent,
        fn_ident: sig.ident.clone(),
        name,
        kind,
        is_async: sig.asyncness.is_some(),
        params,
        output,
        span: sig.span(),
    })
}

fn hook_check(f: &ImplItemFn, what: &str, with_conn: bool) -> syn::Result<()> {
    let n = f.sig.inputs.len();
    let ok_recv = matches!(f.sig.inputs.first(), Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none());
    let expected = if with_conn { 2 } else { 1 };
    if !ok_recv || n != expected {
        let shape = if with_conn {
            "(&self, info: &wirecall::ConnectionInfo)"
        } else {
            "(&self)"
        };
        return Err(syn::Error::new(
            f.sig.span(),
            format!("#[{what}] methods have the signature fn{shape}"),
        ));
    }
    if with_conn && f.sig.asyncness.is_some() {
        return Err(syn::Error::new(
            f.sig.span(),
            format!("#[{what}] methods are synchronous"),
        ));
    }
    Ok(())
}

fn expand(args: ProviderArgs, mut item: ItemImpl) -> syn::Result<TokenStream2> {
    let Some(service) = args.service.clone() else {
        return Err(syn::Error::new(
            Span::call_site(),
            "#[provider] needs `service = \"name\"`: RPC names are `service + \"_\" + method`",
        ));
    };
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[provider] goes on an inherent impl block, not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "#[provider] does not support generic impl blocks",
        ));
    }
    let self_ty = (*item.self_ty).clone();
    let type_name = match &self_ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map(|s| s.ident.clone())
            .ok_or_else(|| syn::Error::new(self_ty.span(), "expected a type name"))?,
        _ => {
            return Err(syn::Error::new(
                self_ty.span(),
                "#[provider] needs a named type",
            ))
        }
    };

    let mut remotes = Vec::new();
    let mut hooks = Hooks::default();
    for it in &mut item.items {
        let ImplItem::Fn(f) = it else { continue };
        let ours: Vec<Attribute> = f
            .attrs
            .iter()
            .filter(|a| attr_name(a).is_some_and(|n| OUR_ATTRS.contains(&n.as_str())))
            .cloned()
            .collect();
        f.attrs
            .retain(|a| !attr_name(a).is_some_and(|n| OUR_ATTRS.contains(&n.as_str())));
        for a in &ours {
            match attr_name(a).as_deref() {
                Some("remote") => remotes.push(parse_remote(f, a, false)?),
                Some("attribute") => remotes.push(parse_remote(f, a, true)?),
                Some("on_prefinalize") => {
                    hook_check(f, "on_prefinalize", false)?;
                    hooks
                        .prefinalize
                        .push((f.sig.ident.clone(), f.sig.asyncness.is_some()));
                }
                Some("on_finalize") => {
                    hook_check(f, "on_finalize", false)?;
                    hooks
                        .finalize
                        .push((f.sig.ident.clone(), f.sig.asyncness.is_some()));
                }
                Some("on_connect") => {
                    hook_check(f, "on_connect", true)?;
                    hooks.connect.push(f.sig.ident.clone());
                }
                Some("on_disconnect") => {
                    hook_check(f, "on_disconnect", true)?;
                    hooks.disconnect.push(f.sig.ident.clone());
                }
                _ => {}
            }
        }
    }
    {
        let mut seen = std::collections::HashSet::new();
        for r in &remotes {
            let key = match r.kind {
                Kind::Method { .. } => format!("m:{}", r.name),
                Kind::Getter => format!("g:{}", r.name),
                Kind::Setter => format!("s:{}", r.name),
            };
            if !seen.insert(key) {
                return Err(syn::Error::new(
                    r.span,
                    format!("two remote items share the name `{}`", r.name),
                ));
            }
        }
    }

    let w = quote!(::wirecall::__private);
    let mut specs = Vec::new();
    let mut client_methods = Vec::new();
    let service_str = service.value();
    for r in &remotes {
        specs.push(handler_spec(r, &self_ty, &w));
        client_methods.push(client_method(r, &service_str, &w));
    }

    let pre = hooks.prefinalize.iter().map(|(id, a)| {
        if *a {
            quote!(self.#id().await;)
        } else {
            quote!(self.#id();)
        }
    });
    let fin = hooks.finalize.iter().map(|(id, a)| {
        if *a {
            quote!(self.#id().await;)
        } else {
            quote!(self.#id();)
        }
    });
    let con = hooks.connect.iter();
    let dis = hooks.disconnect.iter();
    let aliases = &args.aliases;
    let client_ident = format_ident!("{}Client", type_name);
    let client_doc = format!(
        "Typed client for the `{service_str}` provider [`{type_name}`], generated by `#[wirecall::provider]`."
    );

    Ok(quote! {
        #item

        impl ::wirecall::Provider for #self_ty {
            const SERVICE: &'static str = #service;
            const ALIASES: &'static [&'static str] = &[#(#aliases),*];

            fn methods() -> ::std::vec::Vec<#w::MethodSpec<Self>> {
                ::std::vec![#(#specs),*]
            }

            fn on_prefinalize(&self) -> #w::BoxFuture<'_, ()> {
                ::std::boxed::Box::pin(async move { #(#pre)* })
            }

            fn on_finalize(&self) -> #w::BoxFuture<'_, ()> {
                ::std::boxed::Box::pin(async move { #(#fin)* })
            }

            fn on_connect(&self, info: &::wirecall::ConnectionInfo) {
                let _ = info;
                #(self.#con(info);)*
            }

            fn on_disconnect(&self, info: &::wirecall::ConnectionInfo) {
                let _ = info;
                #(self.#dis(info);)*
            }
        }

        #[doc = #client_doc]
        #[derive(Clone, Debug)]
        pub struct #client_ident {
            handle: ::wirecall::ProviderHandle,
        }

        impl #client_ident {
            /// A client for the provider with `provider_id` reached through `proxy` (a
            /// [`wirecall::Proxy`], or anything convertible into one, such as an address).
            /// Through a proxy in Pyro mode (a `PYRO:` URI) it calls the Python object's
            /// methods by their names without the service prefix; `provider_id` must be 0.
            pub fn new(proxy: impl ::wirecall::IntoProxy, provider_id: u16) -> Self {
                Self { handle: ::wirecall::ProviderHandle::new(proxy.into_proxy(), provider_id).with_service(#service) }
            }

            /// The proxy this client calls through.
            pub fn proxy(&self) -> &::wirecall::Proxy {
                self.handle.proxy()
            }

            /// The provider id this client addresses.
            pub fn provider_id(&self) -> u16 {
                self.handle.provider_id()
            }

            #(#client_methods)*
        }
    })
}

fn handler_spec(r: &Remote, self_ty: &Type, w: &TokenStream2) -> TokenStream2 {
    let fn_ident = &r.fn_ident;
    let name = &r.name;
    let value_params: Vec<&Param> = r
        .params
        .iter()
        .filter(|p| p.role == ParamRole::Value)
        .collect();
    let names: Vec<String> = value_params.iter().map(|p| p.ident.to_string()).collect();
    let idents: Vec<&syn::Ident> = value_params.iter().map(|p| &p.ident).collect();
    let tys: Vec<&Type> = value_params.iter().map(|p| &p.ty).collect();
    let call_args = r.params.iter().map(|p| {
        let id = &p.ident;
        match p.role {
            ParamRole::Value => quote!(#id),
            ParamRole::Context => quote!(__call.context()),
            ParamRole::Responder => quote!(__call.responder()),
            ParamRole::Upload => quote!(__call.upload()),
        }
    });
    let uploads = r.params.iter().any(|p| p.role == ParamRole::Upload);
    let has_responder = r.params.iter().any(|p| p.role == ParamRole::Responder);
    let oneway = matches!(r.kind, Kind::Method { oneway: true, .. });
    let blocking = matches!(r.kind, Kind::Method { blocking: true, .. });
    let streams = matches!(r.output, Output::Stream(_) | Output::ResultStream(_));
    let kind = match r.kind {
        Kind::Method { .. } => quote!(#w::MethodKind::Method),
        Kind::Getter => quote!(#w::MethodKind::Getter),
        Kind::Setter => quote!(#w::MethodKind::Setter),
    };
    let encode = match &r.output {
        Output::Result(_) => quote! {
            match __r {
                ::std::result::Result::Ok(__v) => __enc.value(&__v),
                ::std::result::Result::Err(__e) => {
                    #[allow(unused_imports)]
                    use #w::{ViaDisplay as _, ViaError as _};
                    __enc.fault((&&#w::ErrProbe(&__e)).remote_fault())
                }
            }
        },
        Output::ResultStream(_) => quote! {
            match __r {
                ::std::result::Result::Ok(__v) => __enc.stream(__v),
                ::std::result::Result::Err(__e) => {
                    #[allow(unused_imports)]
                    use #w::{ViaDisplay as _, ViaError as _};
                    __enc.fault((&&#w::ErrProbe(&__e)).remote_fault())
                }
            }
        },
        Output::Unit => quote! { { let () = __r; __enc.value(&()) } },
        Output::Plain(_) => quote! { __enc.value(&__r) },
        Output::Stream(_) => quote! { __enc.stream(__r) },
    };
    let body = if has_responder {
        if r.is_async {
            quote! {
                let __this = ::std::sync::Arc::clone(__this);
                #w::Handled::Detached(::std::boxed::Box::pin(async move {
                    __this.#fn_ident(#(#call_args),*).await;
                }))
            }
        } else {
            quote! {
                __this.#fn_ident(#(#call_args),*);
                #w::Handled::Deferred
            }
        }
    } else if r.is_async {
        quote! {
            let __enc = __call.encoder();
            let __this = ::std::sync::Arc::clone(__this);
            #w::Handled::Pending(::std::boxed::Box::pin(async move {
                let __r = __this.#fn_ident(#(#call_args),*).await;
                #encode
            }))
        }
    } else {
        quote! {
            let __enc = __call.ready_encoder();
            let __r = __this.#fn_ident(#(#call_args),*);
            #w::Handled::Ready(#encode)
        }
    };
    // A synchronous method of plain value parameters with a value result also gets a
    // direct handler: the server runs it on calls that need nothing else, with no
    // `Incoming` built and the result encoded straight into the answer's buffer.
    let direct_ok = !r.is_async
        && !oneway
        && !blocking
        && r.params.iter().all(|p| p.role == ParamRole::Value)
        && matches!(
            r.output,
            Output::Plain(_) | Output::Result(_) | Output::Unit
        );
    let direct = if direct_ok {
        let direct_encode = match &r.output {
            Output::Result(_) => quote! {
                match __r {
                    ::std::result::Result::Ok(__v) => __call.value(&__v, __out),
                    ::std::result::Result::Err(__e) => {
                        #[allow(unused_imports)]
                        use #w::{ViaDisplay as _, ViaError as _};
                        __call.fault((&&#w::ErrProbe(&__e)).remote_fault())
                    }
                }
            },
            Output::Unit => quote! { { let () = __r; __call.value(&(), __out) } },
            _ => quote! { __call.value(&__r, __out) },
        };
        quote! {
            ::std::option::Option::Some({
                fn __wirecall_direct(
                    __this: &::std::sync::Arc<#self_ty>,
                    __call: &#w::DirectCall<'_>,
                    __out: &mut ::std::vec::Vec<u8>,
                ) -> ::std::option::Option<#w::Outcome> {
                    struct __Names;
                    impl #w::ParamNames for __Names {
                        const NAMES: &'static [&'static str] = &[#(#names),*];
                    }
                    #[allow(unused_parens)]
                    let (#(#idents,)*) = match __call.decode_args::<(#(#tys,)*), __Names>() {
                        ::std::result::Result::Ok(__a) => __a,
                        ::std::result::Result::Err(__e) => return ::std::option::Option::Some(__e),
                    };
                    let __r = __this.#fn_ident(#(#idents),*);
                    #direct_encode
                }
                __wirecall_direct as #w::DirectFn<#self_ty>
            })
        }
    } else {
        quote!(::std::option::Option::None)
    };
    quote_spanned! {r.span=>
        #w::MethodSpec::<#self_ty> {
            direct: #direct,
            name: #name,
            params: &[#(#names),*],
            kind: #kind,
            oneway: #oneway,
            blocking: #blocking,
            streams: #streams,
            uploads: #uploads,
            handler: {
                fn __wirecall_handler(__this: &::std::sync::Arc<#self_ty>, __call: #w::Incoming) -> #w::Handled {
                    struct __Names;
                    impl #w::ParamNames for __Names {
                        const NAMES: &'static [&'static str] = &[#(#names),*];
                    }
                    #[allow(unused_parens)]
                    let (#(#idents,)*) = match __call.decode_args::<(#(#tys,)*), __Names>() {
                        ::std::result::Result::Ok(__a) => __a,
                        ::std::result::Result::Err(__e) => return #w::Handled::Ready(__e),
                    };
                    #body
                }
                __wirecall_handler
            },
        }
    }
}

fn client_method(r: &Remote, service: &str, w: &TokenStream2) -> TokenStream2 {
    let value_params: Vec<&Param> = r
        .params
        .iter()
        .filter(|p| p.role == ParamRole::Value)
        .collect();
    let idents: Vec<&syn::Ident> = value_params.iter().map(|p| &p.ident).collect();
    let tys: Vec<&Type> = value_params.iter().map(|p| &p.ty).collect();
    let responder_ty = r
        .params
        .iter()
        .find(|p| p.role == ParamRole::Responder)
        .map(|p| {
            responder_result(&p.ty)
                .map(|t| quote!(#t))
                .unwrap_or_else(|| quote!(()))
        });
    let ret: TokenStream2 = if let Some(t) = responder_ty {
        t
    } else {
        match &r.output {
            Output::Unit => quote!(()),
            Output::Plain(t) => quote!(#t),
            Output::Result(t) => quote!(#t),
            Output::Stream(t) | Output::ResultStream(t) => quote!(#t),
        }
    };
    let mut chain = quote!(());
    for id in &idents {
        chain = quote!((#chain, #id));
    }
    let method_ident = match r.kind {
        Kind::Method { .. } => r.fn_ident.clone(),
        Kind::Getter => format_ident!("{}", r.fn_ident),
        Kind::Setter => format_ident!("{}", r.fn_ident),
    };
    let full = format!("{service}_{}", r.name);
    let streams = matches!(r.output, Output::Stream(_) | Output::ResultStream(_));
    if let Some(up) = r.params.iter().find(|p| p.role == ParamRole::Upload) {
        // The argument stream is the client method's last parameter, a `Stream` of the
        // handler's `Streaming<T>` items.
        let up_ident = &up.ident;
        let up_ty = responder_result(&up.ty)
            .map(|t| quote!(#t))
            .unwrap_or_else(|| quote!(()));
        return if streams {
            let doc = format!(
                "Calls `{full}`, sending the items of `{up_ident}` as its argument stream while returning its streamed items as they come (a bidirectional stream; dropping the result cancels the call)."
            );
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys,)* #up_ident: impl #w::Stream<Item = #up_ty> + ::std::marker::Send + 'static) -> ::std::result::Result<::wirecall::RemoteStream<#ret>, ::wirecall::Error> {
                    self.handle.call_upload_stream::<_, _, #ret>(#full, #chain, #up_ident).await
                }
            }
        } else {
            let doc = format!(
                "Calls `{full}`, sending the items of `{up_ident}` as its argument stream (under the server's credit), and waits for its result."
            );
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys,)* #up_ident: impl #w::Stream<Item = #up_ty> + ::std::marker::Send + 'static) -> ::std::result::Result<#ret, ::wirecall::Error> {
                    self.handle.call_upload::<_, _, #ret>(#full, #chain, #up_ident).await
                }
            }
        };
    }
    match r.kind {
        Kind::Method { oneway: false, .. } if streams => {
            let doc = format!(
                "Calls `{full}` and returns its streamed items as they come (dropping the stream cancels the call)."
            );
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys),*) -> ::std::result::Result<::wirecall::RemoteStream<#ret>, ::wirecall::Error> {
                    self.handle.call_stream::<_, #ret>(#full, #chain).await
                }
            }
        }
        Kind::Method { oneway: true, .. } => {
            let doc = format!(
                "Calls `{full}` one way: returns once the call is sent; the server never answers."
            );
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys),*) -> ::std::result::Result<(), ::wirecall::Error> {
                    self.handle.call_oneway(#full, #chain).await
                }
            }
        }
        Kind::Method { oneway: false, .. } if r.idempotent => {
            let doc = format!(
                "Calls `{full}` and waits for its result; idempotent: sent again after a lost connection (up to the proxy's `max_retries`)."
            );
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys),*) -> ::std::result::Result<#ret, ::wirecall::Error> {
                    self.handle.call_idempotent::<_, #ret>(#full, #chain).await
                }
            }
        }
        Kind::Method { oneway: false, .. } => {
            let doc = format!("Calls `{full}` and waits for its result.");
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys),*) -> ::std::result::Result<#ret, ::wirecall::Error> {
                    self.handle.call::<_, #ret>(#full, #chain).await
                }
            }
        }
        Kind::Getter => {
            let doc = format!("Reads the remote attribute `{}`.", r.name);
            let name = &r.name;
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self) -> ::std::result::Result<#ret, ::wirecall::Error> {
                    self.handle.get_attr::<#ret>(#name).await
                }
            }
        }
        Kind::Setter => {
            let doc = format!("Sets the remote attribute `{}`.", r.name);
            let name = &r.name;
            let _ = w;
            quote! {
                #[doc = #doc]
                pub async fn #method_ident(&self, #(#idents: #tys),*) -> ::std::result::Result<(), ::wirecall::Error> {
                    self.handle.set_attr(#name, #(#idents),*).await
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(service: Option<&str>) -> ProviderArgs {
        ProviderArgs {
            service: service.map(|s| LitStr::new(s, Span::call_site())),
            aliases: Vec::new(),
        }
    }

    fn expand_str(service: Option<&str>, item: ItemImpl) -> Result<String, String> {
        expand(args(service), item)
            .map(|t| t.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn generates_the_provider_impl_routes_and_client() {
        let item: ItemImpl = syn::parse_quote! {
            impl MyProvider {
                #[remote]
                async fn say_hello(&self, firstname: String, lastname: String) -> String { todo!() }
                #[remote(name = "notify", oneway)]
                fn notify_all(&self, event: String) {}
                #[remote(blocking)]
                fn fallible(&self) -> Result<u32, std::io::Error> { todo!() }
                #[on_finalize]
                fn finalize(&self) {}
                fn helper(&self) {}
            }
        };
        let out = expand_str(Some("my_service"), item).unwrap();
        assert!(
            out.contains("impl :: wirecall :: Provider for MyProvider"),
            "{out}"
        );
        assert!(
            out.contains("const SERVICE : & 'static str = \"my_service\""),
            "{out}"
        );
        assert!(out.contains("name : \"say_hello\""), "{out}");
        assert!(out.contains("name : \"notify\""), "{out}");
        assert!(out.contains("oneway : true"), "{out}");
        assert!(out.contains("blocking : true"), "{out}");
        assert!(out.contains("pub struct MyProviderClient"), "{out}");
        assert!(out.contains("\"my_service_say_hello\""), "{out}");
        assert!(out.contains("call_oneway (\"my_service_notify\""), "{out}");
        // The Result's Ok type is what the client returns.
        assert!(
            out.contains("call :: < _ , u32 > (\"my_service_fallible\""),
            "{out}"
        );
        // Helper attributes are consumed; undecorated methods are not exposed.
        assert!(!out.contains("# [remote"), "{out}");
        assert!(!out.contains("\"helper\""), "{out}");
    }

    #[test]
    fn idempotent_methods_get_a_retrying_client() {
        let item: ItemImpl = syn::parse_quote! {
            impl P {
                #[remote(idempotent)]
                fn get(&self, k: String) -> u32 { todo!() }
                #[remote]
                fn put(&self, k: String) -> u32 { todo!() }
            }
        };
        let out = expand_str(Some("kv"), item).unwrap();
        assert!(
            out.contains("call_idempotent :: < _ , u32 > (\"kv_get\""),
            "{out}"
        );
        assert!(out.contains("call :: < _ , u32 > (\"kv_put\""), "{out}");
        let item: ItemImpl = syn::parse_quote! {
            impl P { #[attribute(idempotent)] fn a(&self) -> u32 { todo!() } }
        };
        assert!(expand_str(Some("kv"), item).is_err());
    }

    #[test]
    fn refuses_what_cannot_work() {
        let cases: Vec<(Option<&str>, ItemImpl, &str)> = vec![
            (None, syn::parse_quote! { impl P {} }, "needs `service"),
            (
                Some("s"),
                syn::parse_quote! { impl Trait for P {} },
                "inherent impl",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[remote] fn f(&self, s: &str) {} } },
                "owned types",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[remote] fn f(&mut self) {} } },
                "take `&self`",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[remote] fn f<T>(&self, t: T) {} } },
                "cannot be generic",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[remote] fn f(&self) {} #[remote(name = "f")] fn g(&self) {} } },
                "share the name `f`",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[attribute] fn v(&self, x: u8) -> u8 { x } } },
                "getter takes no arguments",
            ),
            (
                Some("s"),
                syn::parse_quote! { impl P { #[on_connect] fn c(&self) {} } },
                "ConnectionInfo",
            ),
        ];
        for (service, item, want) in cases {
            let err = expand_str(service, item).unwrap_err();
            assert!(err.contains(want), "expected `{want}` in: {err}");
        }
    }

    #[test]
    fn a_streaming_parameter_is_the_argument_stream() {
        let item: ItemImpl = syn::parse_quote! {
            impl P {
                #[remote]
                async fn sum(&self, items: Streaming<u64>, scale: u32) -> u64 { todo!() }
                #[remote]
                fn both(&self, items: Streaming<String>) -> ItemStream<String> { todo!() }
            }
        };
        let out = expand_str(Some("s"), item).unwrap();
        // Not a value parameter: only `scale` is decoded from the arguments.
        assert!(out.contains("params : & [\"scale\"]"), "{out}");
        assert!(out.contains("__call . upload ()"), "{out}");
        assert!(out.contains("uploads : true"), "{out}");
        // The client takes the stream last.
        assert!(
            out.contains(
                "scale : u32 , items : impl :: wirecall :: __private :: Stream < Item = u64 >"
            ),
            "{out}"
        );
        assert!(
            out.contains("call_upload :: < _ , _ , u64 > (\"s_sum\""),
            "{out}"
        );
        assert!(
            out.contains("call_upload_stream :: < _ , _ , String > (\"s_both\""),
            "{out}"
        );
        for (item, want) in [
            (
                syn::parse_quote! { impl P { #[remote] fn f(&self, a: Streaming<u8>, b: Streaming<u8>) {} } },
                "at most one Streaming",
            ),
            (
                syn::parse_quote! { impl P { #[remote(oneway)] fn f(&self, a: Streaming<u8>) {} } },
                "two-way",
            ),
        ] {
            let err = expand_str(Some("s"), item).unwrap_err();
            assert!(err.contains(want), "expected `{want}` in: {err}");
        }
    }

    #[test]
    fn responder_type_becomes_the_client_result() {
        let item: ItemImpl = syn::parse_quote! {
            impl P {
                #[remote]
                fn later(&self, x: u32, r: Responder<u64>) {}
                #[attribute]
                fn value(&self) -> u8 { 0 }
                #[attribute(set)]
                fn set_value(&self, v: u8) {}
            }
        };
        let out = expand_str(Some("s"), item).unwrap();
        assert!(out.contains("call :: < _ , u64 > (\"s_later\""), "{out}");
        assert!(out.contains("Handled :: Deferred"), "{out}");
        assert!(out.contains("get_attr :: < u8 > (\"value\")"), "{out}");
        assert!(out.contains("set_attr (\"value\""), "{out}");
    }
}
