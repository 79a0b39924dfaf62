//! Country by address from a GeoLite2/GeoIP2 Country or City database (`.mmdb`,
//! configured with `KURZ_GEOIP_DB`; kurz never downloads one).

use maxminddb::{PathElement, Reader};
use std::net::IpAddr;
use std::path::Path;

pub struct Geo {
    reader: Reader<Vec<u8>>,
}

impl Geo {
    pub fn open(path: &Path) -> Result<Geo, crate::Error> {
        let reader = Reader::open_readfile(path).map_err(|e| crate::Error::Config(format!("GeoIP database {}: {e}", path.display())))?;
        Ok(Geo { reader })
    }

    /// The ISO 3166-1 alpha-2 code of the address's country, if the database knows it.
    pub fn country(&self, ip: IpAddr) -> Option<String> {
        let found = self.reader.lookup(ip).ok()?;
        let code: Option<&str> = found.decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")]).ok()??;
        code.map(str::to_string)
    }
}
