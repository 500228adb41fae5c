//! Delta deletion vectors on object storage: reading one a table's log names, and
//! writing the ones a commit adds into one file (the protocol's "Deletion Vector
//! Format": a version byte, then per vector its size, the RoaringBitmapArray magic,
//! the 64-bit roaring bitmap in its portable serialisation and a CRC-32).

use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::{DeltaTableError, ObjectStore, Path};
use roaring::RoaringTreemap;

/// The RoaringBitmapArray format's magic number (little-endian on disk).
const MAGIC: u32 = 1681511377;
/// Length of a z85-encoded UUID.
const Z85_UUID: usize = 20;

fn bad(what: impl std::fmt::Display) -> DeltaTableError {
    DeltaTableError::Generic(format!("deletion vector: {what}"))
}

/// The rows a file's deletion vector removes (none without one).
pub(crate) async fn read(store: &dyn ObjectStore, dv: Option<&DeletionVectorDescriptor>) -> Result<RoaringTreemap, DeltaTableError> {
    let Some(dv) = dv else { return Ok(RoaringTreemap::new()) };
    let bitmap = match dv.storage_type {
        StorageType::Inline => {
            let bytes = z85::decode(&dv.path_or_inline_dv).map_err(|e| bad(format!("inline vector is not z85: {e}")))?;
            bitmap(&bytes)?
        }
        StorageType::UuidRelativePath => {
            let start = dv.offset.unwrap_or(1) as u64;
            let size = u64::try_from(dv.size_in_bytes).map_err(|_| bad("negative size"))?;
            let path = relative_path(&dv.path_or_inline_dv)?;
            let bytes = store.get_range(&path, start..start + 4 + size + 4).await?;
            let stored = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as u64;
            if stored != size {
                return Err(bad(format!("{path}: the log says {size} bytes, the file {stored}")));
            }
            let body = &bytes[4..4 + size as usize];
            let crc = u32::from_be_bytes(bytes[4 + size as usize..].try_into().map_err(|_| bad(format!("{path} is cut short")))?);
            if crc32fast::hash(body) != crc {
                return Err(bad(format!("{path}: checksum mismatch")));
            }
            bitmap(body)?
        }
        StorageType::AbsolutePath => return Err(bad("vectors stored at absolute paths are not supported")),
    };
    if bitmap.len() != dv.cardinality as u64 {
        return Err(bad(format!("{} rows where the log says {}", bitmap.len(), dv.cardinality)));
    }
    Ok(bitmap)
}

/// Magic and bitmap.
fn bitmap(bytes: &[u8]) -> Result<RoaringTreemap, DeltaTableError> {
    if bytes.len() < 4 || u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) != MAGIC {
        return Err(bad("not a RoaringBitmapArray (wrong magic)"));
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).map_err(bad)
}

/// `<prefix><z85 uuid>` -> `<prefix>/deletion_vector_<uuid>.bin` under the table root.
fn relative_path(encoded: &str) -> Result<Path, DeltaTableError> {
    if encoded.len() < Z85_UUID || !encoded.is_char_boundary(encoded.len() - Z85_UUID) {
        return Err(bad(format!("path {encoded:?} is too short")));
    }
    let (prefix, id) = encoded.split_at(encoded.len() - Z85_UUID);
    let uuid = uuid::Uuid::from_slice(&z85::decode(id).map_err(|e| bad(format!("path {encoded:?}: {e}")))?).map_err(bad)?;
    let name = format!("deletion_vector_{uuid}.bin");
    Ok(if prefix.is_empty() { Path::from(name) } else { Path::from(format!("{prefix}/{name}")) })
}

/// Deletion vectors written together into one new file.
pub(crate) struct DvFile {
    uuid: uuid::Uuid,
    bytes: Vec<u8>,
}

impl DvFile {
    pub(crate) fn new() -> DvFile {
        DvFile { uuid: uuid::Uuid::new_v4(), bytes: vec![1] }
    }

    /// Append `rows`; returns the descriptor an `add` action names it by.
    pub(crate) fn push(&mut self, rows: &RoaringTreemap) -> Result<DeletionVectorDescriptor, DeltaTableError> {
        let mut body = MAGIC.to_le_bytes().to_vec();
        rows.serialize_into(&mut body).map_err(bad)?;
        let offset = i32::try_from(self.bytes.len()).map_err(|_| bad("file over 2 GiB"))?;
        let size = i32::try_from(body.len()).map_err(|_| bad("vector over 2 GiB"))?;
        self.bytes.extend((size as u32).to_be_bytes());
        self.bytes.extend(&body);
        self.bytes.extend(crc32fast::hash(&body).to_be_bytes());
        Ok(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(offset),
            size_in_bytes: size,
            cardinality: rows.len() as i64,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bytes.len() == 1
    }

    /// Write the file (before the commit that names it).
    pub(crate) async fn put(self, store: &dyn ObjectStore) -> Result<(), DeltaTableError> {
        let path = Path::from(format!("deletion_vector_{}.bin", self.uuid));
        store.put(&path, self.bytes.into()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::ObjectStore;

    #[tokio::test]
    async fn written_vectors_read_back() {
        let store = object_store_in_memory();
        let mut f = DvFile::new();
        let a: RoaringTreemap = [0u64, 5, 9_999, 1 << 33].into_iter().collect();
        let b: RoaringTreemap = (100u64..200).collect();
        let (da, db) = (f.push(&a).unwrap(), f.push(&b).unwrap());
        assert_eq!(da.path_or_inline_dv.len(), Z85_UUID);
        assert_eq!(da.offset, Some(1));
        f.put(store.as_ref()).await.unwrap();
        assert_eq!(read(store.as_ref(), Some(&da)).await.unwrap(), a);
        assert_eq!(read(store.as_ref(), Some(&db)).await.unwrap(), b);
        assert!(read(store.as_ref(), None).await.unwrap().is_empty());
        // a descriptor whose cardinality disagrees is refused
        let mut wrong = db.clone();
        wrong.cardinality = 3;
        assert!(read(store.as_ref(), Some(&wrong)).await.is_err());
    }

    #[tokio::test]
    async fn a_damaged_vector_is_refused() {
        let store = object_store_in_memory();
        let mut f = DvFile::new();
        let d = f.push(&(0u64..10).collect()).unwrap();
        let path = Path::from(format!("deletion_vector_{}.bin", f.uuid));
        let mut bytes = f.bytes.clone();
        bytes[12] ^= 0xff;
        store.put(&path, bytes.into()).await.unwrap();
        let e = read(store.as_ref(), Some(&d)).await.unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
    }

    fn object_store_in_memory() -> std::sync::Arc<dyn ObjectStore> {
        std::sync::Arc::new(deltalake::logstore::object_store::memory::InMemory::new())
    }
}
