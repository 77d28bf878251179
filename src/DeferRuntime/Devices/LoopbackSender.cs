using System.Net;
using System.Net.Sockets;
using DeferRuntime.Cpus;

namespace DeferRuntime.Devices;

/// <summary>
/// The far end of a <see cref="LoopbackNic"/> for tests and samples: a UDP socket connected to the NIC
/// that sends <see cref="NicFrame"/>s with consecutive sequence numbers, as fast as it can.
/// </summary>
/// <remarks>
/// UDP has no flow control: a sender that outruns the receiver overflows the kernel's socket buffer and
/// the kernel drops datagrams (<see cref="LoopbackNicStats.KernelDrops"/>). A window keeps it honest: with
/// one, the sender never gets more than that many datagrams ahead of what the driver reports processed,
/// which bounds what waits in the socket buffer. Not thread-safe: one thread sends on one sender.
/// </remarks>
public sealed class LoopbackSender : IDisposable
{
    private readonly Socket _socket; // I
    private readonly byte[] _frame; // I: reused for every datagram
    private long _sent; // written by the sending thread, read by others

    /// <summary>Creates a sender connected to <paramref name="target"/> (a NIC's <see cref="LoopbackNic.LocalEndPoint"/>).</summary>
    /// <param name="target">Where to send.</param>
    /// <param name="senderId">Written into every frame, so a driver can check order per sender.</param>
    /// <param name="frameLength">Bytes per datagram (at least <see cref="NicFrame.HeaderSize"/>).</param>
    public LoopbackSender(IPEndPoint target, int senderId = 0, int frameLength = 64)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfLessThan(frameLength, NicFrame.HeaderSize);
        SenderId = senderId;
        _frame = new byte[frameLength];
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            // Connected, so each send is allocation-free (no per-call endpoint) and blocking, so a full
            // send buffer makes us wait instead of failing.
            _socket.Connect(target);
        }
        catch
        {
            _socket.Dispose();
            throw;
        }
    }

    /// <summary>The id written into this sender's frames.</summary>
    public int SenderId { get; }

    /// <summary>Datagrams sent so far; the next one carries this sequence number.</summary>
    public long Sent => Volatile.Read(ref _sent);

    /// <summary>
    /// Sends <paramref name="count"/> datagrams with the next sequence numbers, as fast as it can. With a
    /// <paramref name="window"/>, first waits (spinning, then yielding, then napping) until fewer than that
    /// many of this sender's datagrams are unprocessed, as <paramref name="processed"/> reports.
    /// </summary>
    /// <param name="count">Datagrams to send.</param>
    /// <param name="processed">How many of this sender's datagrams the receiver has processed (needed with a window).</param>
    /// <param name="window">Most datagrams in flight; 0 for none (a true flood, which the kernel may drop).</param>
    public void Send(long count, Func<long>? processed = null, int window = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        if (window > 0 && processed is null)
        {
            throw new ArgumentNullException(nameof(processed), "A window needs the receiver's processed count to pace against.");
        }
        long end = _sent + count;
        while (_sent < end)
        {
            if (window > 0 && _sent - processed!() >= window)
            {
                var backoff = default(Backoff);
                while (_sent - processed() >= window)
                {
                    backoff.Wait();
                }
            }
            NicFrame.Write(_frame, SenderId, _sent, _frame.Length);
            _socket.Send(_frame);
            Volatile.Write(ref _sent, _sent + 1);
        }
    }

    /// <summary>Closes the socket.</summary>
    public void Dispose() => _socket.Dispose();
}
