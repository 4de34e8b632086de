//! Parsing the `#[capture(..)]` arguments.

use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitBool, LitStr, Token};

/// The longest name X-Ray accepts, in characters.
const MAX_NAME_CHARS: usize = 200;
/// The longest annotation key X-Ray accepts.
const MAX_KEY_LEN: usize = 500;

const OPTIONS: &str = "`name`, `annotate`, `metadata`, `err` or `recorder`";

#[derive(Default)]
pub(crate) struct CaptureArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) annotate: Vec<Field>,
    pub(crate) metadata: Vec<Field>,
    /// `None`: recorded when the return type is spelled `..Result<..>`.
    pub(crate) err: Option<bool>,
    pub(crate) recorder: Option<Expr>,
}

/// `key` (the argument of that name) or `key = expr`.
pub(crate) struct Field {
    pub(crate) key: Ident,
    pub(crate) value: Option<Expr>,
}

impl Field {
    /// The key as written, without a raw identifier's `r#`.
    pub(crate) fn key_str(&self) -> String {
        self.key.unraw().to_string()
    }
}

impl Parse for CaptureArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = CaptureArgs::default();
        let mut seen_err = false;
        while !input.is_empty() {
            if input.peek(LitStr) {
                let name: LitStr = input.parse()?;
                args.set_name(name)?;
            } else {
                // `parse_any` so that a keyword (`type`, `fn`) gets the "unknown option" error
                // below rather than a bare "expected identifier".
                let option = Ident::parse_any(input)?;
                match option.to_string().as_str() {
                    "name" => {
                        input.parse::<Token![=]>()?;
                        let name: LitStr = input.parse().map_err(|e| {
                            syn::Error::new(e.span(), "expected the name as a string literal")
                        })?;
                        args.set_name(name)?;
                    }
                    "annotate" => {
                        if !args.annotate.is_empty() {
                            return Err(syn::Error::new(
                                option.span(),
                                "`annotate` is given twice; list every annotation in one `annotate(..)`",
                            ));
                        }
                        args.annotate = parse_fields(input, &option, true)?;
                    }
                    "metadata" => {
                        if !args.metadata.is_empty() {
                            return Err(syn::Error::new(
                                option.span(),
                                "`metadata` is given twice; list every entry in one `metadata(..)`",
                            ));
                        }
                        args.metadata = parse_fields(input, &option, false)?;
                    }
                    "err" => {
                        if std::mem::replace(&mut seen_err, true) {
                            return Err(syn::Error::new(option.span(), "`err` is given twice"));
                        }
                        args.err = Some(if input.peek(Token![=]) {
                            input.parse::<Token![=]>()?;
                            let value: LitBool = input.parse().map_err(|e| {
                                syn::Error::new(e.span(), "expected `err = true` or `err = false`")
                            })?;
                            value.value
                        } else {
                            true
                        });
                    }
                    "recorder" => {
                        if args.recorder.is_some() {
                            return Err(syn::Error::new(
                                option.span(),
                                "`recorder` is given twice",
                            ));
                        }
                        input.parse::<Token![=]>()?;
                        args.recorder = Some(input.parse()?);
                    }
                    other => {
                        return Err(syn::Error::new(
                            option.span(),
                            format!("unknown `#[capture]` option `{other}`; expected {OPTIONS}"),
                        ));
                    }
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

impl CaptureArgs {
    fn set_name(&mut self, name: LitStr) -> syn::Result<()> {
        if self.name.is_some() {
            return Err(syn::Error::new(name.span(), "the name is given twice"));
        }
        check_name(&name)?;
        self.name = Some(name);
        Ok(())
    }
}

fn parse_fields(
    input: ParseStream<'_>,
    option: &Ident,
    annotation: bool,
) -> syn::Result<Vec<Field>> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            option.span(),
            format!("expected `{option}(key = value, ..)` or `{option}(argument, ..)`"),
        ));
    }
    let content;
    syn::parenthesized!(content in input);
    let fields = Punctuated::<Field, Token![,]>::parse_terminated(&content)?;
    if fields.is_empty() {
        return Err(syn::Error::new(
            option.span(),
            format!("`{option}()` lists nothing; remove it or name what to record"),
        ));
    }
    let mut out: Vec<Field> = Vec::with_capacity(fields.len());
    for field in fields {
        let key = field.key_str();
        if out.iter().any(|f| f.key_str() == key) {
            return Err(syn::Error::new(
                field.key.span(),
                format!("`{key}` is recorded twice"),
            ));
        }
        if annotation {
            check_annotation_key(&field.key, &key)?;
        }
        out.push(field);
    }
    Ok(out)
}

impl Parse for Field {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let key: Ident = input.parse()?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Field { key, value })
    }
}

/// The rule X-Ray filter expressions impose on annotation keys: `^[A-Za-z0-9_]{1,500}$`.
fn check_annotation_key(ident: &Ident, key: &str) -> syn::Result<()> {
    if key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(syn::Error::new(
            ident.span(),
            "annotation keys are 1 to 500 ASCII letters, digits or underscores",
        ));
    }
    Ok(())
}

/// The names X-Ray accepts: 1 to 200 Unicode letters, numbers, spaces and `_ . : / % & # = + - @`.
/// The recorder would strip anything else at run time; a literal can be checked now.
fn check_name(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    if value.is_empty() {
        return Err(syn::Error::new(name.span(), "the subsegment name is empty"));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(syn::Error::new(
            name.span(),
            "the subsegment name is longer than 200 characters",
        ));
    }
    if let Some(bad) = value.chars().find(|&c| !is_name_char(c)) {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "`{}` cannot appear in an X-Ray name; use letters, numbers, spaces and `_ . : / % & # = + - @`",
                bad.escape_default()
            ),
        ));
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric()
        || (c.is_whitespace() && !c.is_control())
        || matches!(
            c,
            '_' | '.' | ':' | '/' | '%' | '&' | '#' | '=' | '+' | '-' | '@'
        )
}
