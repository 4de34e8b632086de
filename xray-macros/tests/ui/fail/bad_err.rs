use xray_sdk::capture;

#[capture(err = "yes")]
fn handler() -> Result<(), std::fmt::Error> {
    Ok(())
}

#[capture(err, err = false)]
fn twice() -> Result<(), std::fmt::Error> {
    Ok(())
}

fn main() {
    let _ = handler();
    let _ = twice();
}
