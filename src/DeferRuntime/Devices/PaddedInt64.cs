using System.Runtime.InteropServices;

namespace DeferRuntime.Devices;

/// <summary>
/// A long alone on its cache line (64 bytes of padding each side): a ring index that one thread writes
/// on every event and another polls, kept off the line of the index going the other way.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 136)]
internal struct PaddedInt64
{
    [FieldOffset(64)] public long Value;
}
