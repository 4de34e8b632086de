//! The expansion uses absolute paths and hygienic locals: user items named like std's or like
//! the generated locals change nothing.
#![allow(dead_code, non_camel_case_types)]

use xray_sdk::capture;

struct Option;
struct Some;
struct None;
struct Result;
struct Ok;
struct Err;
struct Box;
struct Guard;
struct Outcome;
mod core {}
mod xray {}

#[capture(annotate(__xray_guard))]
fn uses_generated_names(__xray_guard: u32, __xray_entity: u32) -> u32 {
    let __xray_out = __xray_guard + __xray_entity;
    __xray_out
}

#[capture]
fn returns_result(x: u32) -> std::result::Result<u32, std::fmt::Error> {
    let __xray_subsegment = x;
    std::result::Result::Ok(__xray_subsegment)
}

#[capture(annotate(__xray_subsegment))]
async fn async_generated_names(__xray_subsegment: u32) -> std::result::Result<u32, std::fmt::Error> {
    let __xray_future = __xray_subsegment;
    std::result::Result::Ok(__xray_future)
}

fn main() {
    uses_generated_names(1, 2);
    let _ = returns_result(1);
    let _ = async_generated_names(1);
}
