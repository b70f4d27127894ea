//! Crate-private macros.

/// Implements `Hash`, `PartialEq`, `Eq` and `Borrow<$view>` for `$ty` through its method
/// `$as_view(&self) -> &$view`: a map keyed by `$ty` is then looked up by `&$view`, and the
/// `Borrow` contract holds (the key hashes and compares exactly as its view).
macro_rules! key_by_view {
    ($ty:ty, $as_view:ident, $view:ty) => {
        impl std::hash::Hash for $ty {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.$as_view().hash(state);
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.$as_view() == other.$as_view()
            }
        }

        impl Eq for $ty {}

        impl std::borrow::Borrow<$view> for $ty {
            fn borrow(&self) -> &$view {
                self.$as_view()
            }
        }
    };
}
