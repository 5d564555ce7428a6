//! The plain element types a buffer stores: `f32` and `u8` observations, `i64` (discrete) and `f32`
//! (continuous) actions.
use std::fmt::Debug;
use std::io::{Read, Write};

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u8 {}
    impl Sealed for i64 {}
}

/// An element type of stored observations or actions (`f32`, `u8` or `i64`; sealed).
///
/// ```
/// use bellman_replay::Element;
/// assert_eq!(<f32 as Element>::NAME, "f32");
/// assert_eq!(<u8 as Element>::SIZE, 1);
/// ```
pub trait Element: Copy + Default + PartialEq + Debug + Send + Sync + 'static + private::Sealed {
    /// Type name, as written in saved files and error messages.
    const NAME: &'static str;
    /// Stable one-byte code in the saved-file header.
    const CODE: u8;
    /// Size in bytes.
    const SIZE: usize;
    /// Writes `data` little-endian.
    fn write_slice(data: &[Self], w: &mut dyn Write) -> std::io::Result<()>;
    /// Reads `out.len()` little-endian elements.
    fn read_slice(r: &mut dyn Read, out: &mut [Self]) -> std::io::Result<()>;
}

macro_rules! impl_element {
    ($t:ty, $name:expr, $code:expr) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            const CODE: u8 = $code;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write_slice(data: &[Self], w: &mut dyn Write) -> std::io::Result<()> {
                let mut buf = [0u8; 8192];
                for chunk in data.chunks(8192 / Self::SIZE) {
                    for (x, b) in chunk.iter().zip(buf.chunks_exact_mut(Self::SIZE)) {
                        b.copy_from_slice(&x.to_le_bytes());
                    }
                    w.write_all(&buf[..chunk.len() * Self::SIZE])?;
                }
                Ok(())
            }
            fn read_slice(r: &mut dyn Read, out: &mut [Self]) -> std::io::Result<()> {
                let mut buf = [0u8; 8192];
                for chunk in out.chunks_mut(8192 / Self::SIZE) {
                    let bytes = &mut buf[..chunk.len() * Self::SIZE];
                    r.read_exact(bytes)?;
                    for (x, b) in chunk.iter_mut().zip(bytes.chunks_exact(Self::SIZE)) {
                        *x = <$t>::from_le_bytes(b.try_into().expect("chunk has the element size"));
                    }
                }
                Ok(())
            }
        }
    };
}

impl_element!(f32, "f32", 1);
impl_element!(i64, "i64", 3);

impl Element for u8 {
    const NAME: &'static str = "u8";
    const CODE: u8 = 2;
    const SIZE: usize = 1;
    fn write_slice(data: &[Self], w: &mut dyn Write) -> std::io::Result<()> {
        w.write_all(data)
    }
    fn read_slice(r: &mut dyn Read, out: &mut [Self]) -> std::io::Result<()> {
        r.read_exact(out)
    }
}
