use xray_sdk::capture;

#[capture]
const fn answer() -> u32 {
    42
}

fn main() {
    answer();
}
