//! The `#[capture]` attribute for AWS X-Ray.
//!
//! Use it through `xray-sdk`, which re-exports it (feature `macros`, on by default) and holds
//! the code the attribute expands to: `use xray_sdk::capture;`. See [`capture`] for the full
//! documentation.
#![deny(missing_docs)]

mod attr;
mod expand;

use proc_macro::TokenStream;
use quote::ToTokens;

/// Records each call of a function as an X-Ray subsegment.
///
/// The subsegment is a child of the entity current when the function starts (see
/// [`xray_sdk::current`]), is current itself while the function runs, so that calls inside it
/// nest under it, and ends when the function returns, unwinds or, for async functions, when
/// the future completes or is dropped. It is named after the function unless given a name.
///
/// ```
/// use xray_sdk::{capture, Recorder};
/// # use std::sync::Arc;
/// # use xray_sdk::InMemoryEmitter;
/// # use xray_sdk::sampling::{LocalSampler, SamplingRules};
///
/// #[capture]
/// fn load_basket(user: u64) -> Vec<u32> {
///     vec![3, 4]
/// }
///
/// #[capture(name = "price basket", annotate(user, items = basket.len()))]
/// fn price(user: u64, basket: &[u32]) -> u32 {
///     basket.iter().sum()
/// }
///
/// # let emitter = InMemoryEmitter::new();
/// # let recorder = Recorder::builder()
/// #     .ignore_environment()
/// #     .with_emitter(emitter.clone())
/// #     .with_sampler(Arc::new(LocalSampler::new(
/// #         SamplingRules::builder().with_default(0, 1.0).build()?,
/// #     )))
/// #     .build()?;
/// let segment = recorder.begin_segment("checkout");
/// {
///     let _current = segment.enter();
///     let basket = load_basket(42);
///     assert_eq!(price(42, &basket), 7);
/// }
/// segment.end();
/// # let doc = &emitter.documents()[0];
/// # assert_eq!(doc["subsegments"][0]["name"], "load_basket");
/// # assert_eq!(doc["subsegments"][1]["name"], "price basket");
/// # assert_eq!(doc["subsegments"][1]["annotations"]["items"], 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The attribute is re-exported by `xray-sdk` (feature `macros`, on by default) and expands
/// to calls into `xray_sdk`: depend on `xray-sdk`, and write `xray_sdk::capture` or
/// `use xray_sdk::capture;`.
///
/// # Options
///
/// | option | effect |
/// |---|---|
/// | `"name"` or `name = "name"` | the subsegment's name (default: the function's name) |
/// | `annotate(arg, key = expr, ..)` | annotations: indexed, searchable in filter expressions |
/// | `metadata(arg, key = expr, ..)` | metadata in the `default` namespace: any `Serialize` value |
/// | `err`, `err = false` | record `Err` values even when the return type is not spelled `Result`; or never |
/// | `recorder = expr` | the recorder whose context-missing strategy applies (default: [`Recorder::global`]) |
///
/// Options are separated by commas, in any order, each given once.
///
/// ## Naming the subsegment
///
/// A name is a string literal: 1 to 200 letters, numbers, spaces and `_ . : / % & # = + - @`,
/// checked at compile time (X-Ray strips other characters). A raw identifier loses its `r#`:
/// `fn r#match()` records `match`. Methods are named by the method alone; name them
/// explicitly (`#[capture("Cart::total")]`) where the type matters.
///
/// ## Annotations and metadata
///
/// `annotate(order_id)` records the argument `order_id` under the key `order_id`;
/// `annotate(tier = customer.tier())` records any expression, which can use the arguments and
/// `self`. Values are borrowed, never moved. An annotation is a string, an integer, a float or
/// a bool (or a reference to one, or an [`AnnotationValue`]); an `Option` of these records
/// nothing when `None`. Keys must be ASCII letters, digits or `_` (X-Ray cannot search others),
/// checked at compile time. `metadata(..)` takes the same forms, for any
/// [`serde::Serialize`](https://docs.rs/serde) value.
///
/// Nothing is recorded unless named: unlike `#[tracing::instrument]`, which records every
/// argument unless told to `skip` it, `#[capture]` has no `skip`. X-Ray indexes at most 50
/// annotations per trace, and arguments often hold what must not leave the process.
///
/// The expressions are evaluated before the body runs, and only when the subsegment is
/// recorded: an unsampled request pays nothing for them, and they must not have side effects
/// the function relies on.
///
/// ```
/// # use xray_sdk::capture;
/// struct Order {
///     id: u64,
///     coupon: Option<String>,
/// }
///
/// impl Order {
///     #[capture(
///         annotate(order_id = self.id, coupon = &self.coupon, express),
///         metadata(lines = lines)
///     )]
///     fn ship(&self, express: bool, lines: &[(String, u32)]) -> bool {
///         express
///     }
/// }
/// ```
///
/// ## Errors
///
/// When the return type is spelled `Result<..>` (including aliases such as `io::Result<T>`),
/// an `Err` value is recorded on the subsegment, which is marked as a fault:
///
/// - an `E: Error` with its message, its type name and its `source()` chain (`E` need not be
///   `'static`);
/// - a `Box<dyn Error + Send + Sync>`, a `Box<dyn Error>`, or any type that is
///   `AsRef<dyn Error + Send + Sync>` (`anyhow::Error`, `eyre::Report`) with the chain of the error
///   inside;
/// - any other `E: Display` with its message and type name;
/// - anything else is not recorded.
///
/// `?` and early `return`s are seen too: the body of such a function runs in a closure, as
/// `#[tracing::instrument(err)]` does. Add `err` to record the errors of a function whose
/// return type hides its `Result` behind an alias of another name; `err = false` records none.
///
/// ```
/// # use xray_sdk::capture;
/// #[derive(Debug)]
/// struct NotFound;
///
/// impl std::fmt::Display for NotFound {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("no such basket")
///     }
/// }
/// impl std::error::Error for NotFound {}
///
/// #[capture]
/// fn find(id: u64) -> Result<u64, NotFound> {
///     if id == 0 {
///         return Err(NotFound); // recorded: message "no such basket", type `..::NotFound`
///     }
///     Ok(id)
/// }
///
/// type Lookup = Result<u64, NotFound>;
///
/// #[capture(err)] // the alias does not say `Result`
/// fn lookup(id: u64) -> Lookup {
///     find(id)
/// }
/// ```
///
/// ## Panics
///
/// A panic unwinding out of the function ends the subsegment marked as a fault, with the panic
/// message as the cause (read from the payload of a `panic!`), then keeps unwinding: the panic
/// is caught around the body only to be recorded, and resumed at once. For async functions
/// this is done inside the poll that panics (by [`Subsegment::instrument`]'s future, which the
/// attribute expands to), so it holds even when the executor catches the panic. For sync
/// functions the cause's stack names the function and where it is defined; the place of the
/// `panic!` itself is known only to a panic hook, and no hook is installed: the process's own
/// stays as it was. A function returning `!` is not wrapped: its panics are faults with the
/// cause `panicked`, without the message.
///
/// ## Async functions
///
/// On an `async fn`, the subsegment begins at the first poll, under the entity current then,
/// covers every later poll (it is made current around each one, whichever thread polls) and ends
/// when the future completes or is dropped, a cancelled call included. The future stays `Send`
/// when the function's is. A future handed to `spawn` starts without a context unless wrapped
/// with [`FutureExt::in_current_context`] or [`FutureExt::with_context`].
///
/// ```
/// # use std::sync::Arc;
/// # use xray_sdk::InMemoryEmitter;
/// # use xray_sdk::sampling::{LocalSampler, SamplingRules};
/// use xray_sdk::{capture, FutureExt, Recorder};
///
/// #[capture(annotate(key))]
/// async fn fetch(key: &str) -> Option<String> {
///     tokio::task::yield_now().await;
///     Some(key.to_uppercase())
/// }
///
/// # let emitter = InMemoryEmitter::new();
/// # let recorder = Recorder::builder()
/// #     .ignore_environment()
/// #     .with_emitter(emitter.clone())
/// #     .with_sampler(Arc::new(LocalSampler::new(
/// #         SamplingRules::builder().with_default(0, 1.0).build()?,
/// #     )))
/// #     .build()?;
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// let segment = recorder.begin_segment("worker");
/// let value = rt.block_on(fetch("a").with_context(segment.entity().clone()));
/// assert_eq!(value.as_deref(), Some("A"));
/// segment.end();
/// # assert_eq!(emitter.documents()[0]["subsegments"][0]["annotations"]["key"], "a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `async fn` in traits and impls is supported, and so are the functions `#[async_trait]`
/// generates: a function whose body ends in an `async` block, `Box::pin`ned or not, has that
/// block captured rather than the creation of the future. Put `#[capture]` on the method inside
/// the `#[async_trait]` impl:
///
/// ```
/// # use xray_sdk::capture;
/// #[async_trait::async_trait]
/// trait Cache {
///     async fn get(&self, key: u32) -> Option<u32>;
/// }
///
/// struct Memory;
///
/// #[async_trait::async_trait]
/// impl Cache for Memory {
///     #[capture(annotate(key))]
///     async fn get(&self, key: u32) -> Option<u32> {
///         Some(key)
///     }
/// }
/// ```
///
/// ## When nothing is recorded
///
/// When the current entity is not recorded (the request was not sampled, or the SDK is
/// disabled) no subsegment is created, nothing is allocated and the annotation and metadata
/// expressions are not evaluated: the function runs as written, after one thread-local read.
///
/// When there is no current entity at all, the function runs as written too, and the
/// recorder's context-missing strategy applies: `LOG_ERROR` and `RUNTIME_ERROR` count and log
/// it (a function cannot fail because tracing did), `IGNORE_ERROR` does nothing. That recorder
/// is [`Recorder::global`], looked up only then, or the one given by `recorder = expr`: a
/// `Recorder`, a reference to one or an `Arc<Recorder>`, evaluated at each call. The
/// subsegment itself always joins the current entity's segment, and is sent by the recorder
/// that began that segment.
///
/// ```
/// # use std::sync::Arc;
/// use xray_sdk::{capture, InMemoryEmitter, Recorder};
/// use xray_sdk::config::ContextMissing;
///
/// struct Service {
///     recorder: Recorder,
/// }
///
/// impl Service {
///     #[capture(recorder = &self.recorder)]
///     fn handle(&self) -> u32 {
///         7
///     }
/// }
///
/// let service = Service {
///     recorder: Recorder::builder()
///         .ignore_environment()
///         .with_emitter(InMemoryEmitter::new())
///         .with_context_missing(ContextMissing::LogError)
///         .build()?,
/// };
/// assert_eq!(service.handle(), 7); // no segment: runs, logs, records nothing
/// assert_eq!(service.recorder.stats().context_missing, 1);
/// # Ok::<(), xray_sdk::ConfigError>(())
/// ```
///
/// # Compile errors
///
/// Misuse is reported at the offending tokens: an unknown or repeated option, a name that is
/// not a valid literal, `annotate(x)` or `metadata(x)` where `x` is not an argument, an invalid
/// or repeated key, an annotation of a type that cannot be one, and `#[capture]` on a
/// `const fn`, a method without a body, or something that is not a function.
///
/// [`xray_sdk::current`]: https://docs.rs/xray-sdk/latest/xray_sdk/fn.current.html
/// [`Recorder::global`]:
/// https://docs.rs/xray-sdk/latest/xray_sdk/struct.Recorder.html#method.global
/// [`AnnotationValue`]: https://docs.rs/xray-sdk/latest/xray_sdk/enum.AnnotationValue.html
/// [`FutureExt::in_current_context`]:
/// https://docs.rs/xray-sdk/latest/xray_sdk/trait.FutureExt.html#method.in_current_context
/// [`FutureExt::with_context`]:
/// https://docs.rs/xray-sdk/latest/xray_sdk/trait.FutureExt.html#method.with_context
/// [`Subsegment::instrument`]:
/// https://docs.rs/xray-sdk/latest/xray_sdk/struct.Subsegment.html#method.instrument
#[proc_macro_attribute]
pub fn capture(args: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<attr::CaptureArgs>(args) {
        Ok(args) => args,
        Err(e) => return with_error(e, item),
    };
    match syn::parse::<syn::ItemFn>(item.clone()) {
        Ok(function) => match expand::gen_function(args, function) {
            Ok(out) => out.into(),
            Err(e) => with_error(e, item),
        },
        Err(_) => not_a_function(item),
    }
}

/// The error, followed by the item unchanged: one precise diagnostic instead of a cascade of
/// "cannot find function" errors wherever the item is used.
fn with_error(error: syn::Error, item: TokenStream) -> TokenStream {
    let mut out = error.to_compile_error();
    out.extend(proc_macro2::TokenStream::from(item));
    out.into()
}

/// Something that is not a function with a body.
fn not_a_function(item: TokenStream) -> TokenStream {
    if let Ok(method) = syn::parse::<syn::TraitItemFn>(item.clone())
        && method.default.is_none()
    {
        let error = syn::Error::new(
            method.sig.ident.span(),
            "#[capture] needs a function body: put it on the implementations of this method",
        );
        return with_error(error, item);
    }
    if let Ok(other) = syn::parse::<syn::Item>(item.clone()) {
        let error = syn::Error::new_spanned(
            item_keyword(&other),
            "#[capture] can only be used on functions and methods",
        );
        return with_error(error, item);
    }
    // Not an item at all: rustc's own parser reports the syntax error on the unchanged tokens.
    item
}

/// The tokens that best point at what an item is (`struct S`, `mod m`), for the error.
fn item_keyword(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::quote;
    use syn::Item;
    match item {
        Item::Struct(i) => {
            let (kw, ident) = (&i.struct_token, &i.ident);
            quote!(#kw #ident)
        }
        Item::Enum(i) => {
            let (kw, ident) = (&i.enum_token, &i.ident);
            quote!(#kw #ident)
        }
        Item::Mod(i) => {
            let (kw, ident) = (&i.mod_token, &i.ident);
            quote!(#kw #ident)
        }
        Item::Trait(i) => {
            let (kw, ident) = (&i.trait_token, &i.ident);
            quote!(#kw #ident)
        }
        Item::Impl(i) => {
            let (kw, ty) = (&i.impl_token, &i.self_ty);
            quote!(#kw #ty)
        }
        Item::Const(i) => {
            let (kw, ident) = (&i.const_token, &i.ident);
            quote!(#kw #ident)
        }
        Item::Static(i) => {
            let (kw, ident) = (&i.static_token, &i.ident);
            quote!(#kw #ident)
        }
        _ => item.to_token_stream(),
    }
}
