using System.Buffers.Binary;

namespace DeferRuntime.Devices;

/// <summary>
/// The test frame the <see cref="LoopbackSender"/> sends and drivers check: sender id, sequence number,
/// an RFC 1071 Internet checksum (the one IP and UDP use), and a payload derived from the sequence.
/// </summary>
/// <remarks>
/// Layout, little-endian: bytes 0-3 sender id, 4-11 sequence, 12-13 checksum, 14-15 zero, 16.. payload
/// (byte i = (sequence + i) mod 256). The checksum is the ones' complement of the ones' complement sum of
/// every 16-bit word with the checksum field taken as zero, so a receiver's sum over the whole frame is 0xFFFF.
/// </remarks>
public static class NicFrame
{
    /// <summary>Bytes before the payload.</summary>
    public const int HeaderSize = 16;

    /// <summary>Writes a frame of <paramref name="length"/> bytes (at least <see cref="HeaderSize"/>) into <paramref name="destination"/>.</summary>
    /// <returns>The frame's length.</returns>
    public static int Write(Span<byte> destination, int senderId, long sequence, int length = 64)
    {
        if (length < HeaderSize || length > destination.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"A frame is {HeaderSize} to {destination.Length} bytes (the destination's size).");
        }
        var frame = destination[..length];
        BinaryPrimitives.WriteInt32LittleEndian(frame, senderId);
        BinaryPrimitives.WriteInt64LittleEndian(frame[4..], sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(frame[12..], 0);
        for (int i = HeaderSize; i < length; i++)
        {
            frame[i] = (byte)(sequence + i);
        }
        BinaryPrimitives.WriteUInt16LittleEndian(frame[12..], (ushort)~OnesComplementSum(frame));
        return length;
    }

    /// <summary>Checks a received frame's size and checksum and reads its header. Allocation-free.</summary>
    /// <returns>False for a frame shorter than the header or with a bad checksum (corrupt, truncated or foreign).</returns>
    public static bool TryRead(ReadOnlySpan<byte> frame, out int senderId, out long sequence)
    {
        senderId = 0;
        sequence = 0;
        if (frame.Length < HeaderSize || OnesComplementSum(frame) != 0xFFFF)
        {
            return false;
        }
        senderId = BinaryPrimitives.ReadInt32LittleEndian(frame);
        sequence = BinaryPrimitives.ReadInt64LittleEndian(frame[4..]);
        return true;
    }

    /// <summary>RFC 1071: the 16-bit ones' complement sum of the data (an odd last byte padded with zero).</summary>
    private static ushort OnesComplementSum(ReadOnlySpan<byte> data)
    {
        ulong sum = 0;
        int i = 0;
        for (; i + 1 < data.Length; i += 2)
        {
            sum += BinaryPrimitives.ReadUInt16LittleEndian(data[i..]);
        }
        if (i < data.Length)
        {
            sum += data[i];
        }
        while ((sum >> 16) != 0)
        {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        return (ushort)sum;
    }
}
