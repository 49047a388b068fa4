// bfloat16 storage, shared by the safetensors reader/writer and the runtime's bf16 kernels.

/// A bfloat16 value (the upper half of a float32), as torch.bfloat16 stores it.
public struct BFloat16: Equatable, Sendable {
    public var bits: UInt16

    public init(bits: UInt16) { self.bits = bits }

    /// Rounds to nearest even, as torch does.
    public init(_ value: Float) {
        let b = value.bitPattern
        bits = value.isNaN ? UInt16(b >> 16) | 0x40 : UInt16((b &+ 0x7fff &+ ((b >> 16) & 1)) >> 16)
    }

    public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
}
