//! Function shapes that must keep compiling under `#[capture]`.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;

use xray_sdk::{Recorder, capture};

#[capture]
unsafe fn raw(p: *const u8) -> u8 {
    unsafe { *p }
}

#[capture]
pub(crate) fn visibility() {}

#[capture]
#[inline]
#[must_use]
fn other_attributes() -> u8 {
    #![allow(clippy::let_and_return)]
    let x = 1;
    x
}

#[capture(recorder = Recorder::global())]
fn global_recorder() {}

#[capture(recorder = std::sync::Arc::new(Recorder::disabled()))]
fn arc_recorder() {}

#[capture]
fn boxed_future(x: u32) -> Pin<Box<dyn Future<Output = u32> + Send>> {
    Box::pin(async move { x })
}

#[capture]
fn never_returns() -> ! {
    loop {}
}

#[capture]
fn question_mark(s: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[capture]
async fn question_mark_async(s: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[capture]
fn returns_impl_in_result() -> Result<impl std::fmt::Display, std::fmt::Error> {
    Ok(1)
}

#[capture]
async fn async_impl() -> impl std::fmt::Display {
    1
}

struct S<'a>(&'a mut Vec<u8>);

impl<'a> S<'a> {
    #[capture]
    fn get(&mut self) -> &mut Vec<u8> {
        self.0
    }

    #[capture]
    async fn lifetimes<'b>(&'b self, other: &'b str) -> &'b str {
        other
    }

    #[capture]
    fn try_get(&mut self) -> Result<&mut u8, ()> {
        self.0.first_mut().ok_or(())
    }
}

fn main() {}
