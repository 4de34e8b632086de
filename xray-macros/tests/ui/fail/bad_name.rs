use xray_sdk::capture;

#[capture("load basket?")]
fn load() {}

#[capture(name = "")]
fn empty() {}

#[capture(name = load)]
fn not_a_literal() {}

#[capture("first", name = "second")]
fn twice() {}

fn main() {
    load();
    empty();
    not_a_literal();
    twice();
}
