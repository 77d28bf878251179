using System.Runtime.CompilerServices;

namespace DeferRuntime.Devices;

/// <summary>
/// A NIC's receive descriptor ring: pre-allocated frame buffers with their lengths. The device's receive
/// path fills descriptors (<see cref="LoopbackNic.ReceiveIntoRing"/>); the driver's poll reads the oldest
/// with <see cref="TryPeek"/> and gives it back with <see cref="Release"/>, as a driver hands a descriptor
/// back to the hardware once it has processed the frame.
/// </summary>
/// <remarks>
/// Single producer, single consumer, lock-free and allocation-free. The producer side may move between
/// threads (the top half, then the NAPI poll) because each hand-over goes through an atomic operation
/// (the interrupt acknowledgement, napi_schedule, the interrupt re-enable); one thread consumes at a time
/// (the instance's poll, which NAPI never runs on two CPUs at once).
/// </remarks>
public sealed class RxRing
{
    private readonly byte[][] _buffers; // I: one frame buffer per descriptor
    private readonly int[] _lengths; // written by the producer before it publishes the descriptor
    private readonly int _mask; // I
    private PaddedInt64 _head; // producer: descriptors filled
    private PaddedInt64 _tail; // consumer: descriptors given back

    internal RxRing(int descriptors, int frameSize)
    {
        _buffers = new byte[descriptors][];
        for (int i = 0; i < descriptors; i++)
        {
            _buffers[i] = new byte[frameSize];
        }
        _lengths = new int[descriptors];
        _mask = descriptors - 1;
    }

    /// <summary>Descriptors in the ring.</summary>
    public int Capacity => _buffers.Length;

    /// <summary>Bytes per descriptor buffer: the largest frame received whole.</summary>
    public int FrameSize => _buffers[0].Length;

    /// <summary>Frames filled and not yet given back.</summary>
    public int Count => (int)(Volatile.Read(ref _head.Value) - Volatile.Read(ref _tail.Value));

    /// <summary>Frames filled since creation.</summary>
    public long Filled => Volatile.Read(ref _head.Value);

    /// <summary>Frames given back by the driver since creation.</summary>
    public long Released => Volatile.Read(ref _tail.Value);

    /// <summary>Consumer: the oldest filled frame, valid until <see cref="Release"/>. False when the ring is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryPeek(out ReadOnlySpan<byte> frame)
    {
        long tail = _tail.Value;
        if (tail == Volatile.Read(ref _head.Value))
        {
            frame = default;
            return false;
        }
        int slot = (int)(tail & _mask);
        frame = new ReadOnlySpan<byte>(_buffers[slot], 0, _lengths[slot]);
        return true;
    }

    /// <summary>Consumer: gives the oldest frame's descriptor back to the device.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Release()
    {
        long tail = _tail.Value;
        if (tail == Volatile.Read(ref _head.Value))
        {
            ThrowEmpty();
        }
        Volatile.Write(ref _tail.Value, tail + 1);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowEmpty() => throw new InvalidOperationException("RxRing.Release(): the ring is empty; release only a frame obtained with TryPeek().");

    // ---- producer (the device's receive path) ----

    /// <summary>The next free descriptor's buffer, or null when the ring is full.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte[]? FreeBuffer()
    {
        long head = _head.Value;
        return head - Volatile.Read(ref _tail.Value) < _buffers.Length ? _buffers[head & _mask] : null;
    }

    /// <summary>Publishes the descriptor <see cref="FreeBuffer"/> returned, holding <paramref name="length"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Publish(int length)
    {
        long head = _head.Value;
        _lengths[head & _mask] = length;
        Volatile.Write(ref _head.Value, head + 1);
    }
}
