//! Multi-row `VALUES` lists, for the bulk inserts (`keygate seed`).

/// Rows a statement of a bulk insert. More is slower on SQLite: sqlx looks each bound value's
/// name up with `sqlite3_bind_parameter_name`, a scan, so a statement costs the square of its
/// values (measured: 100,000 keys in 2.7 s at 10 rows, 2.8 s at 40, 10 s at 500).
pub(super) const BULK_ROWS: usize = 10;

/// `($1, $2), ($3, $4)` for `rows` rows of `columns` values: a multi-row `VALUES` list.
pub(super) fn placeholders(rows: usize, columns: usize) -> String {
    let row = |row: usize| {
        let values: Vec<String> = (1..=columns).map(|c| format!("${}", row * columns + c)).collect();
        format!("({})", values.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}
