//! Generating the captured function.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{
    AttrStyle, Block, Expr, ExprAsync, ExprCall, FnArg, GenericArgument, Ident, ItemFn, Pat,
    PathArguments, ReturnType, Stmt, Type, TypeParamBound,
};

use crate::attr::{CaptureArgs, Field};

/// The captured version of `item`.
pub(crate) fn gen_function(args: CaptureArgs, item: ItemFn) -> syn::Result<TokenStream> {
    if let Some(constness) = &item.sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "#[capture] cannot be used on a `const fn`: a subsegment is recorded at run time",
        ));
    }
    if let Some(variadic) = &item.sig.variadic {
        return Err(syn::Error::new(
            variadic.span(),
            "#[capture] cannot be used on a variadic function",
        ));
    }
    let params = param_names(&item);
    for field in args.annotate.iter().chain(&args.metadata) {
        if field.value.is_none() && !params.iter().any(|p| p == &field.key) {
            let key = field.key_str();
            return Err(syn::Error::new(
                field.key.span(),
                format!(
                    "`{key}` is not an argument of this function; to record an expression, write `{key} = <expr>`"
                ),
            ));
        }
    }

    let name = match &args.name {
        Some(name) => name.value(),
        None => item.sig.ident.unraw_string(),
    };
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = item;
    let (outer, inner): (Vec<_>, Vec<_>) = attrs
        .into_iter()
        .partition(|a| matches!(a.style, AttrStyle::Outer));

    let body = if sig.asyncness.is_some() {
        let output = match &sig.output {
            ReturnType::Type(_, ty) => Some((**ty).clone()),
            ReturnType::Default => None,
        };
        gen_async(&args, &name, &block, output.as_ref(), sig.ident.span())
    } else if let Some(shape) = AsyncShape::find(&block, &sig.output) {
        shape.rewrite(&args, &name, &block)
    } else {
        let function = sig.ident.unraw_string();
        gen_sync(
            &args,
            &name,
            &function,
            &block,
            &sig.output,
            sig.ident.span(),
        )
    };

    Ok(quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #body
        }
    })
}

// ===== names =====

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        let s = self.to_string();
        s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
    }
}

/// Every name the parameters bind, through destructuring patterns.
fn param_names(item: &ItemFn) -> Vec<Ident> {
    let mut out = Vec::new();
    for input in &item.sig.inputs {
        if let FnArg::Typed(t) = input {
            pat_names(&t.pat, &mut out);
        }
    }
    out
}

fn pat_names(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(p) => {
            out.push(p.ident.clone());
            if let Some((_, sub)) = &p.subpat {
                pat_names(sub, out);
            }
        }
        Pat::Reference(p) => pat_names(&p.pat, out),
        Pat::Struct(p) => p.fields.iter().for_each(|f| pat_names(&f.pat, out)),
        Pat::Tuple(p) => p.elems.iter().for_each(|e| pat_names(e, out)),
        Pat::TupleStruct(p) => p.elems.iter().for_each(|e| pat_names(e, out)),
        Pat::Slice(p) => p.elems.iter().for_each(|e| pat_names(e, out)),
        Pat::Type(p) => pat_names(&p.pat, out),
        Pat::Paren(p) => pat_names(&p.pat, out),
        _ => {}
    }
}

/// A local of the generated code: `mixed_site` hygiene keeps it out of the user's reach, so a
/// user binding of the same name neither sees nor shadows it.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

// ===== the shared parts =====

/// `let sub = begin(..)`: `Option<Subsegment>`, `Some` only when recorded.
fn gen_begin(args: &CaptureArgs, name: &str) -> TokenStream {
    match &args.recorder {
        Some(recorder) => quote_spanned! {recorder.span()=>
            ::xray_sdk::__private::begin_in(&(#recorder), #name)
        },
        None => quote!(::xray_sdk::__private::begin(#name)),
    }
}

/// The annotation and metadata calls on `entity`. User expressions keep their spans, so a type
/// error points at them.
fn gen_records(args: &CaptureArgs, entity: &Ident) -> TokenStream {
    let value = |f: &Field| -> TokenStream {
        match &f.value {
            Some(expr) => quote_spanned!(expr.span()=> &(#expr)),
            None => {
                let key = &f.key;
                quote_spanned!(key.span()=> &#key)
            }
        }
    };
    let annotations = args.annotate.iter().map(|f| {
        let key = f.key_str();
        let value = value(f);
        quote!(::xray_sdk::__private::annotate(#entity, #key, #value);)
    });
    let metadata = args.metadata.iter().map(|f| {
        let key = f.key_str();
        let value = value(f);
        quote!(::xray_sdk::__private::metadata(#entity, #key, #value);)
    });
    quote!(#(#annotations)* #(#metadata)*)
}

/// Records an `Err` held in `out` on `entity`, by autoref specialization (see
/// `xray_sdk::__private::Outcome`).
fn gen_record_outcome(out: &Ident, entity: &Ident) -> TokenStream {
    quote! {{
        #[allow(unused_imports)]
        use ::xray_sdk::__private::{
            RecordBoxedError as _, RecordBoxedLocalError as _, RecordDisplay as _,
            RecordError as _, RecordNothing as _,
        };
        (&&&&&::xray_sdk::__private::Outcome(&#out)).__xray_record(#entity);
    }}
}

/// Whether `Err` values are recorded: as asked, else when the type is spelled `..Result<..>`.
fn records_err(args: &CaptureArgs, output: Option<&Type>) -> bool {
    args.err.unwrap_or_else(|| output.is_some_and(is_result))
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Paren(p) => is_result(&p.elem),
        Type::Group(g) => is_result(&g.elem),
        _ => false,
    }
}

/// An unreachable `return` of the declared type as the first statement of a body moved into a
/// closure or an async block, so that its type is inferred from the signature as it was before
/// (otherwise `?` and early `return`s can leave it ambiguous).
fn fake_return(output: Option<&Type>, span: Span) -> TokenStream {
    let ty = match output {
        Some(ty) => erase_impl_trait(ty).into_token_stream(),
        None => quote!(()),
    };
    quote_spanned! {span=>
        #[allow(
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::let_unit_value,
            clippy::unreachable
        )]
        if false {
            let __xray_fake_return: #ty =
                ::core::unreachable!("only for type inference");
            return __xray_fake_return;
        }
    }
}

/// `impl Trait` cannot be written in a `let`: replace it with `_`.
fn erase_impl_trait(ty: &Type) -> Type {
    struct Eraser;
    impl VisitMut for Eraser {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::ImplTrait(_) = t {
                *t = Type::Infer(syn::TypeInfer {
                    underscore_token: Default::default(),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, t);
            }
        }
    }
    let mut ty = ty.clone();
    Eraser.visit_type_mut(&mut ty);
    ty
}

// ===== sync =====

fn gen_sync(
    args: &CaptureArgs,
    name: &str,
    function: &str,
    block: &Block,
    output: &ReturnType,
    ident_span: Span,
) -> TokenStream {
    let (output, ret_span) = match output {
        ReturnType::Type(_, ty) => (Some(&**ty), ty.span()),
        ReturnType::Default => (None, ident_span),
    };
    let guard = local("__xray_guard");
    let entity = local("__xray_entity");
    let out = local("__xray_out");
    let begin = gen_begin(args, name);
    let records = gen_records(args, &entity);
    let records = quote! {
        if let ::core::option::Option::Some(#guard) = &#guard {
            let #entity = #guard.entity();
            #records
        }
    };
    // The statements, not the block: `{ x }` as the tail of a generated block would trip
    // `unused_braces` on the user's code.
    let stmts = &block.stmts;
    if matches!(output, Some(Type::Never(_))) {
        // `-> !`: the body stays as it is, since the closure below would need `!` written as
        // its return type, which is unstable. A panic still ends the subsegment as a fault (the
        // subsegment sees it unwind), without the message.
        return quote! {
            // Uninitialised unless recorded: a drop flag, not a dummy guard, on the unsampled
            // path.
            let #guard = #begin.map(::xray_sdk::__private::Guard::enter);
            #records
            #(#stmts)*
        };
    }
    // The body runs in a closure passed to `call`, which records a panic unwinding out of it
    // (with its message, read from the payload) and resumes it. `?` and `return` hand their
    // value back here, where an `Err` can be seen (as tracing's `#[instrument(err)]` does).
    // `call`'s `FnOnce` bound lets a body return borrows of what it captured (a method
    // returning `Result<&mut T, E>`), which a closure inferred as `FnMut` could not.
    let fake = fake_return(output, ret_span);
    let site = quote_spanned! {ident_span=>
        #function, ::core::file!(), ::core::line!()
    };
    let call = quote_spanned! {block.span()=>
        ::xray_sdk::__private::call(&mut #guard, #site, move || {
            #fake
            #(#stmts)*
        })
    };
    let head = quote! {
        // Uninitialised unless recorded: a drop flag, not a dummy guard, on the unsampled path.
        let mut #guard = #begin.map(::xray_sdk::__private::Guard::enter);
        #records
    };
    if !records_err(args, output) {
        return quote! {
            #head
            #call
        };
    }
    let record = gen_record_outcome(&out, &entity);
    quote_spanned! {block.span()=>
        #head
        let #out = #call;
        if let ::core::option::Option::Some(#guard) = &#guard {
            let #entity = #guard.entity();
            #record
        }
        #out
    }
}

// ===== async =====

/// The body of an `async fn` (or of an async block a function returns): the subsegment begins
/// at the first poll, under the context current then, and covers every later poll.
fn gen_async(
    args: &CaptureArgs,
    name: &str,
    block: &Block,
    output: Option<&Type>,
    ident_span: Span,
) -> TokenStream {
    let sub = local("__xray_subsegment");
    let entity = local("__xray_entity");
    let fut = local("__xray_future");
    let out = local("__xray_out");
    let begin = gen_begin(args, name);
    let records = gen_records(args, &entity);
    let ret_span = output.map_or(ident_span, Spanned::span);
    let stmts = &block.stmts;
    let fake = fake_return(output, ret_span);
    let inner = if records_err(args, output) {
        let record = gen_record_outcome(&out, &entity);
        quote_spanned! {block.span()=>
            let #entity = #sub.as_ref().map(|s| ::core::clone::Clone::clone(s.entity()));
            let #fut = async move {
                let #out = async move {
                    #fake
                    #(#stmts)*
                }
                .await;
                if let ::core::option::Option::Some(#entity) = &#entity {
                    #record
                }
                #out
            };
        }
    } else {
        quote_spanned! {block.span()=>
            let #fut = async move {
                #fake
                #(#stmts)*
            };
        }
    };
    quote! {
        let #sub = #begin;
        if let ::core::option::Option::Some(#sub) = &#sub {
            let #entity = #sub.entity();
            #records
        }
        #inner
        match #sub {
            ::core::option::Option::Some(#sub) => {
                ::xray_sdk::Subsegment::instrument(#sub, #fut).await
            }
            ::core::option::Option::None => #fut.await,
        }
    }
}

/// A sync function whose last expression is an async block, optionally `Box::pin`ned: what
/// `#[async_trait]` generates, and hand-written `fn f() -> impl Future`. Capturing the call
/// itself would time only the creation of the future, so the async block is captured instead.
struct AsyncShape<'a> {
    stmt: &'a Stmt,
    async_expr: &'a ExprAsync,
    boxed: bool,
    output: Option<Type>,
}

impl<'a> AsyncShape<'a> {
    fn find(block: &'a Block, output: &ReturnType) -> Option<Self> {
        let stmt = block.stmts.last()?;
        let Stmt::Expr(expr, None) = stmt else {
            return None;
        };
        let (async_expr, boxed) = match expr {
            Expr::Async(a) => (a, false),
            Expr::Call(ExprCall { func, args, .. }) => {
                let Expr::Path(path) = &**func else {
                    return None;
                };
                let mut segments = path.path.segments.iter().rev();
                let is_box_pin = segments.next().is_some_and(|s| s.ident == "pin")
                    && segments.next().is_some_and(|s| s.ident == "Box");
                match (is_box_pin, args.first()) {
                    (true, Some(Expr::Async(a))) if args.len() == 1 => (a, true),
                    _ => return None,
                }
            }
            _ => return None,
        };
        let output = match output {
            ReturnType::Type(_, ty) => future_output(ty),
            ReturnType::Default => None,
        };
        Some(Self {
            stmt,
            async_expr,
            boxed,
            output,
        })
    }

    fn rewrite(&self, args: &CaptureArgs, name: &str, block: &Block) -> TokenStream {
        let span = self.async_expr.block.span();
        let body = gen_async(
            args,
            name,
            &self.async_expr.block,
            self.output.as_ref(),
            span,
        );
        let attrs = &self.async_expr.attrs;
        let capture = &self.async_expr.capture;
        let replaced = if self.boxed {
            quote!(::std::boxed::Box::pin(#(#attrs)* async #capture { #body }))
        } else {
            quote!(#(#attrs)* async #capture { #body })
        };
        let stmts = block.stmts.iter().map(|s| {
            if std::ptr::eq(s, self.stmt) {
                replaced.clone()
            } else {
                s.to_token_stream()
            }
        });
        quote!(#(#stmts)*)
    }
}

/// `R` in `Pin<Box<dyn Future<Output = R> + ..>>`, `impl Future<Output = R>`, and the like.
fn future_output(ty: &Type) -> Option<Type> {
    match ty {
        Type::Path(p) => path_output(&p.path),
        Type::ImplTrait(t) => bounds_output(t.bounds.iter()),
        Type::TraitObject(t) => bounds_output(t.bounds.iter()),
        Type::Paren(p) => future_output(&p.elem),
        Type::Group(g) => future_output(&g.elem),
        _ => None,
    }
}

fn path_output(path: &syn::Path) -> Option<Type> {
    path.segments.iter().find_map(|seg| match &seg.arguments {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(assoc.ty.clone()),
            GenericArgument::Type(t) => future_output(t),
            _ => None,
        }),
        _ => None,
    })
}

fn bounds_output<'a>(mut bounds: impl Iterator<Item = &'a TypeParamBound>) -> Option<Type> {
    bounds.find_map(|b| match b {
        TypeParamBound::Trait(t) => path_output(&t.path),
        _ => None,
    })
}
