"""BLE sensors: BTHome v2 advertisements (plain and encrypted) through bleak."""
