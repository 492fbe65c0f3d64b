//! polis-gateway patch: how this copy of samael lets libxml2 and xmlsec touch input.
//!
//! Upstream samael 0.0.22 parses with libxml2's defaults (`recover` on, network
//! allowed, the document's own encoding declaration obeyed), leaves xmlsec's
//! reference URIs and transforms unrestricted, and lets both libraries print to
//! stderr. Every message this copy parses is untrusted, so here:
//!
//! - [`parse_untrusted`] reads the bytes as UTF-8 whatever the document declares
//!   (`XML_PARSE_IGNORE_ENC` + an explicit `UTF-8` encoding), without network access
//!   (`XML_PARSE_NONET`), without `recover`, and without DTD loading, entity
//!   substitution or XInclude (those options are never set);
//! - [`init_process`] (called once, from the xmlsec initialisation) installs an
//!   external-entity loader that refuses every URL, and routes xmlsec's error trace
//!   to `tracing` (target `xmlsec`);
//! - [`restrict_context`] limits a signature context to same-document references
//!   (plus `URI=""`, the whole document, only where the caller asks for it: a
//!   Signature enveloped directly in the root of signed metadata), and to the transforms polis-gateway allows: exclusive c14n, enveloped-signature,
//!   RSA-SHA256/384/512 and SHA-256/384/512. Anything else (XSLT, XPath, remote URIs,
//!   SHA-1, inclusive c14n) fails inside xmlsec even if a caller's own allowlist
//!   missed it;
//! - libxml2's parse and tree errors go to `tracing` (target `libxml2`) through a
//!   per-thread structured error handler installed before each parse and verification.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;

use libxml::parser::XmlParseError;
use libxml::tree::document::Document;

use super::wrapper::bindings;

/// xmlsec's `xmlSecErrorsCallback` (xmlsec/errors.h).
type XmlSecErrorsCallback = Option<
    unsafe extern "C" fn(
        file: *const c_char,
        line: c_int,
        func: *const c_char,
        error_object: *const c_char,
        error_subject: *const c_char,
        reason: c_int,
        msg: *const c_char,
    ),
>;

extern "C" {
    // xmlsec/errors.h is not among samael's bindgen headers.
    fn xmlSecErrorsSetCallback(callback: XmlSecErrorsCallback);
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libxml2/xmlsec pass NUL-terminated strings that live for the call.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

unsafe extern "C" fn libxml_error(_ctx: *mut c_void, error: bindings::xmlErrorPtr) {
    if error.is_null() {
        return;
    }
    // SAFETY: libxml2 passes a valid error for the duration of the call.
    let e = unsafe { &*error };
    tracing::debug!(
        target: "libxml2",
        domain = e.domain,
        code = e.code,
        line = e.line,
        "{}",
        text(e.message).trim_end()
    );
}

unsafe extern "C" fn xmlsec_error(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    msg: *const c_char,
) {
    tracing::debug!(
        target: "xmlsec",
        func = %text(func),
        object = %text(error_object),
        subject = %text(error_subject),
        reason,
        "{}",
        text(msg)
    );
}

/// Refuses every external entity, DTD or URL libxml2 would load.
unsafe extern "C" fn refuse_external_entity(
    _url: *const c_char,
    _id: *const c_char,
    _ctxt: bindings::xmlParserCtxtPtr,
) -> bindings::xmlParserInputPtr {
    tracing::warn!(target: "libxml2", "external entity load refused");
    null_mut()
}

/// Process-wide settings; called once, before xmlsec is initialised.
pub(crate) fn init_process() {
    // SAFETY: both setters store a function pointer in a libxml2/xmlsec global.
    unsafe {
        bindings::xmlSetExternalEntityLoader(Some(refuse_external_entity));
        xmlSecErrorsSetCallback(Some(xmlsec_error));
    }
}

/// Routes libxml2's errors on this thread to `tracing` (libxml2 keeps the handler per
/// thread, and verification runs on a pool of threads).
pub(crate) fn route_thread_errors() {
    // SAFETY: stores a function pointer in libxml2's per-thread error state.
    unsafe { bindings::xmlSetStructuredErrorFunc(null_mut(), Some(libxml_error)) };
}

/// Parses untrusted bytes: UTF-8 only (the declared encoding is ignored), no network,
/// no recovery, no DTD loading, no entity substitution, no XInclude.
///
/// `xmlReadMemory` is called directly: the `libxml` crate's
/// `parse_string_with_options` frees the encoding name before libxml2 reads it (a
/// use-after-free that made libxml2 decode with whatever encoding the freed memory
/// then named), and its option bits do not all mean in the XML parser what their
/// names say.
pub(crate) fn parse_untrusted<Bytes: AsRef<[u8]>>(xml: Bytes) -> Result<Document, XmlParseError> {
    const UTF8: &CStr = c"UTF-8";
    let options = libxml::bindings::xmlParserOption_XML_PARSE_NONET
        | libxml::bindings::xmlParserOption_XML_PARSE_IGNORE_ENC;
    // The entity loader and error callbacks are installed by the initialisation: make
    // sure it ran before the first parse.
    super::wrapper::xmlsec_internal::guarantee_xmlsec_init()
        .map_err(|_| XmlParseError::GotNullPointer)?;
    let bytes = xml.as_ref();
    let len = c_int::try_from(bytes.len()).map_err(|_| XmlParseError::DocumentTooLarge)?;
    route_thread_errors();
    // SAFETY: `bytes` and `UTF8` outlive the call; libxml2 copies what it keeps.
    let doc = unsafe {
        libxml::bindings::xmlReadMemory(
            bytes.as_ptr().cast::<c_char>(),
            len,
            std::ptr::null(),
            UTF8.as_ptr(),
            options as c_int,
        )
    };
    if doc.is_null() {
        Err(XmlParseError::GotNullPointer)
    } else {
        Ok(Document::new_ptr(doc))
    }
}

/// Same-document references only (`#id`; also `URI=""`, the whole document, when
/// `allow_empty_uri`), and only the allowed transforms, for both the references and
/// SignedInfo. KeyInfo's RetrievalMethod stays same-document only. Returns false if
/// xmlsec refused a setting.
pub(crate) fn restrict_context(ctx: *mut bindings::xmlSecDSigCtx, allow_empty_uri: bool) -> bool {
    if ctx.is_null() {
        return false;
    }
    let reference_uris = if allow_empty_uri {
        bindings::xmlSecTransformUriTypeSameDocument | bindings::xmlSecTransformUriTypeEmpty
    } else {
        bindings::xmlSecTransformUriTypeSameDocument
    };
    // SAFETY: `ctx` is a live context created by xmlSecDSigCtxCreate; the klass
    // getters return static descriptors.
    unsafe {
        (*ctx).enabledReferenceUris = reference_uris;
        (*ctx).keyInfoReadCtx.retrievalMethodCtx.enabledUris =
            bindings::xmlSecTransformUriTypeSameDocument;
        let reference = [
            bindings::xmlSecTransformEnvelopedGetKlass(),
            bindings::xmlSecTransformExclC14NGetKlass(),
            bindings::xmlSecOpenSSLTransformSha256GetKlass(),
            bindings::xmlSecOpenSSLTransformSha384GetKlass(),
            bindings::xmlSecOpenSSLTransformSha512GetKlass(),
        ];
        let signature = [
            bindings::xmlSecTransformExclC14NGetKlass(),
            bindings::xmlSecOpenSSLTransformRsaSha256GetKlass(),
            bindings::xmlSecOpenSSLTransformRsaSha384GetKlass(),
            bindings::xmlSecOpenSSLTransformRsaSha512GetKlass(),
        ];
        for id in reference {
            if bindings::xmlSecDSigCtxEnableReferenceTransform(ctx, id) < 0 {
                return false;
            }
        }
        for id in signature {
            if bindings::xmlSecDSigCtxEnableSignatureTransform(ctx, id) < 0 {
                return false;
            }
        }
    }
    true
}

/// The most certificates (or private keys) one thread keeps loaded (the SPID, CIE and
/// eIDAS IdPs with their rollover keys fit many times over); past it that cache
/// starts afresh.
const KEY_CACHE_MAX: usize = 256;

thread_local! {
    /// Certificate DER → the xmlsec key loaded from it, per thread (xmlsec keys are
    /// not shared across threads). Keyed by the whole DER, so a changed certificate
    /// is a new entry and never reuses another's key.
    static CERT_KEYS: KeyCache = std::cell::RefCell::new(std::collections::HashMap::new());

    /// Private-key DER → the xmlsec signing key loaded from it, per thread, as
    /// [`CERT_KEYS`] for certificates: decoding a key (OpenSSL 3's decoder) costs
    /// more than the RSA signature it then makes.
    static PRIVATE_KEYS: KeyCache = std::cell::RefCell::new(std::collections::HashMap::new());
}

/// polis-gateway patch: the xmlsec key of a DER private key, loaded once per thread
/// (`xmlSecCryptoAppKeyLoadMemory`, format Der, as upstream loads it on every
/// signature) and lent to each signing context after that.
pub(crate) fn cached_private_key(
    der: &[u8],
) -> Result<std::rc::Rc<super::wrapper::XmlSecKey>, super::wrapper::XmlSecError> {
    cached_key(&PRIVATE_KEYS, der, super::wrapper::XmlSecKeyFormat::Der)
}

/// polis-gateway patch: the xmlsec key of a DER certificate, loaded once per thread
/// (`xmlSecCryptoAppKeyLoadMemory`, format CertDer, exactly as upstream loads it on
/// every verification) and lent to each verifying context after that.
pub(crate) fn cached_cert_key(
    der: &[u8],
) -> Result<std::rc::Rc<super::wrapper::XmlSecKey>, super::wrapper::XmlSecError> {
    cached_key(&CERT_KEYS, der, super::wrapper::XmlSecKeyFormat::CertDer)
}

type KeyCache =
    std::cell::RefCell<std::collections::HashMap<Vec<u8>, std::rc::Rc<super::wrapper::XmlSecKey>>>;

/// The key `der` (in `format`) from this thread's `cache`, loaded on first use.
fn cached_key(
    cache: &'static std::thread::LocalKey<KeyCache>,
    der: &[u8],
    format: super::wrapper::XmlSecKeyFormat,
) -> Result<std::rc::Rc<super::wrapper::XmlSecKey>, super::wrapper::XmlSecError> {
    if let Some(key) = cache.with(|c| c.borrow().get(der).cloned()) {
        return Ok(key);
    }
    let key = std::rc::Rc::new(super::wrapper::XmlSecKey::from_memory(der, format)?);
    cache.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(der.to_vec(), std::rc::Rc::clone(&key));
    });
    Ok(key)
}
