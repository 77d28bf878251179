using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using DeferRuntime.Cpus;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Devices;

/// <summary>Options of a <see cref="LoopbackNic"/>.</summary>
public sealed record LoopbackNicOptions
{
    /// <summary>The device's name (its thread is <c>nic/Name</c>; drivers usually request the IRQ under it). Default "lo-nic".</summary>
    public string Name { get; init; } = "lo-nic";

    /// <summary>RX descriptors (default 256, a power of two).</summary>
    public int RingSize { get; init; } = 256;

    /// <summary>Bytes per descriptor buffer (default 2048); longer datagrams are truncated to it.</summary>
    public int FrameSize { get; init; } = 2048;

    /// <summary>
    /// SO_RCVBUF asked of the kernel (default 4 MiB): how much the kernel's socket buffer — the device's
    /// FIFO while its ring is full or its interrupt masked — may hold. Linux caps it at net.core.rmem_max
    /// and doubles it; <see cref="LoopbackNic.SocketReceiveBufferBytes"/> says what was granted.
    /// </summary>
    public int SocketReceiveBufferBytes { get; init; } = 4 << 20;

    /// <summary>How long the device thread waits in one poll(2) before it looks at its stop flag (default 20 ms).</summary>
    public TimeSpan PollSlice { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// OS cores to pin the device thread to (a device, not a CPU of the runtime); null or empty: not pinned.
    /// A refusal is reported in <see cref="LoopbackNic.PinError"/>, never fatal.
    /// </summary>
    public IReadOnlyList<int>? DeviceCores { get; init; }

    internal void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Name, nameof(Name));
        if (RingSize < 2 || (RingSize & (RingSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(RingSize), RingSize, "RingSize must be a power of two, at least 2.");
        }
        if (FrameSize is < NicFrame.HeaderSize or > 65_536)
        {
            throw new ArgumentOutOfRangeException(nameof(FrameSize), FrameSize, $"FrameSize must be {NicFrame.HeaderSize} to 65536 bytes.");
        }
        if (SocketReceiveBufferBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(SocketReceiveBufferBytes), SocketReceiveBufferBytes, "SocketReceiveBufferBytes must be at least 4096.");
        }
        if (PollSlice < TimeSpan.FromMilliseconds(1) || PollSlice > TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(PollSlice), PollSlice, "PollSlice must be 1 ms to 1 s.");
        }
    }
}

/// <summary>
/// A network card backed by a real OS event source: a UDP socket bound to 127.0.0.1 on an ephemeral port.
/// Its device thread waits for receive readiness and asserts the NIC's edge-triggered line; the driver's
/// top half moves pending datagrams into the RX descriptor ring (<see cref="Rx"/>), masks the device
/// interrupt and schedules NAPI, whose poll drains the ring and keeps receiving until the socket is empty.
/// </summary>
/// <remarks>
/// <para>The device's registers, one atomic word: the interrupt mask (IMS: <see cref="EnableInterrupts"/>
/// / <see cref="DisableInterrupts"/>) and the interrupt cause (ICR). The device raises its line only when
/// data is readable, the interrupt is enabled and no cause is pending: it sets the cause, then asserts.
/// <see cref="AckAndDisableInterrupts"/> is the top half's read of ICR with auto-mask (as e1000e's IAM):
/// it clears the cause and masks the interrupt in one step, so from that moment until the driver's
/// <see cref="EnableInterrupts"/> the receive path (top half, then NAPI poll) owns the ring and nothing
/// else can raise the line — a flood is then drained by polling, not by interrupts.</para>
/// <para>Why <see cref="Socket.Poll(int, SelectMode)"/>: it is poll(2) on this one descriptor, so the
/// kernel wakes exactly this device thread when a datagram lands, and the thread asserts the line itself,
/// like hardware raising a pin. The asynchronous socket API would route readiness through .NET's shared
/// epoll thread and a thread-pool hop: someone else's thread, one more wake-up per interrupt.</para>
/// <para>poll(2) is level-triggered: while data waits it returns at once. So while the interrupt is masked
/// or its cause unacknowledged the device does not poll: it notes the readiness once
/// (<see cref="LoopbackNicStats.ReadyWhileMasked"/>) and sleeps until the driver writes a register.
/// Re-enabling with data pending asserts again at once.</para>
/// <para>No packet is ever lost by the device: a datagram is either in the kernel's socket buffer (the
/// device's FIFO while the ring is full or the interrupt masked) or in the ring until the driver releases
/// it. The kernel itself may drop datagrams if its socket buffer overflows; <see cref="LoopbackNicStats.KernelDrops"/>
/// reports that count from /proc/net/udp, and senders should pace against the driver (see
/// <see cref="LoopbackSender"/>'s window) so it stays 0.</para>
/// <para>Shutdown: <see cref="Stop"/> the device before disposing the runtime (assertions from a thread of
/// no CPU are refused once shutdown begins); <see cref="Dispose"/> stops it and closes the socket.</para>
/// <para>Field legend: <c>I:</c> set at creation; <c>A:</c> any thread, Interlocked; <c>D:</c> the device
/// thread only; <c>R:</c> the receive path that owns the ring (handed over by the register operations'
/// full barriers). Other threads read counters with <see cref="Volatile"/>.</para>
/// </remarks>
public sealed class LoopbackNic : IDisposable
{
    private const int RegEnabled = 1; // IMS: the device may interrupt
    private const int RegCause = 2;   // ICR: the device has raised its line and the driver has not acknowledged it

    private readonly Runtime _runtime; // I
    private readonly LoopbackNicOptions _options; // I
    private readonly Socket _socket; // I
    private readonly Parker _doorbell = new(); // I: register writes wake the device thread
    private Thread? _thread; // I (at Start)
    private string? _pinError; // written by the device thread once
    private volatile bool _stop; // set by Stop/Dispose
    private int _regs; // A: RegEnabled | RegCause
    private ExceptionDispatchInfo? _fault; // D: set before the thread exits, read after Join

    // D: the device thread.
    private long _readiness; // times poll(2) reported data while the interrupt was enabled
    private long _readyWhileMasked; // masked (or cause pending) periods in which data was waiting
    private long _interrupts; // assertions of the line
    private long _delivered, _coalesced, _latched; // what the controller did with them

    // R: the receive path that owns the ring (top half after an acknowledged interrupt, then the poll).
    private long _rxPackets;
    private long _rxBytes;
    private long _ringFull; // receive passes that found no free descriptor (what waits stays in the socket)
    private long _rxErrors;

    private long _acks; // A: interrupts acknowledged by the driver
    private long _notMine; // A: AckAndDisableInterrupts() that found no cause (a shared line, or a stale edge)

    /// <summary>Creates the NIC: allocates its edge line, binds its socket to 127.0.0.1:0 and pre-allocates its ring. <see cref="Start"/> starts the device.</summary>
    public LoopbackNic(Runtime runtime, LoopbackNicOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        options ??= new LoopbackNicOptions();
        options.Validate();
        _runtime = runtime;
        _options = options;
        Irq = runtime.Irqs.AllocateIrq(IrqTrigger.Edge);
        Rx = new RxRing(options.RingSize, options.FrameSize);
        _socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        try
        {
            _socket.ReceiveBufferSize = options.SocketReceiveBufferBytes;
            _socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            // Non-blocking: the receive path takes what is there and stops at EWOULDBLOCK; only the
            // device thread waits, in poll(2).
            _socket.Blocking = false;
            LocalEndPoint = (IPEndPoint)_socket.LocalEndPoint!;
            SocketReceiveBufferBytes = _socket.ReceiveBufferSize;
        }
        catch
        {
            _socket.Dispose();
            throw;
        }
    }

    /// <summary>The device's name.</summary>
    public string Name => _options.Name;

    /// <summary>The NIC's interrupt line (edge-triggered, allocated for it).</summary>
    public int Irq { get; }

    /// <summary>Where to send datagrams to this NIC (127.0.0.1 and its ephemeral port).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>The socket receive buffer the kernel granted (SO_RCVBUF as read back; Linux reports twice what it accounts).</summary>
    public int SocketReceiveBufferBytes { get; }

    /// <summary>The RX descriptor ring the receive path fills and the driver's poll drains.</summary>
    public RxRing Rx { get; }

    /// <summary>True while the device interrupt is enabled (IMS).</summary>
    public bool InterruptsEnabled => (Volatile.Read(ref _regs) & RegEnabled) != 0;

    /// <summary>Why the device thread could not be pinned to <see cref="LoopbackNicOptions.DeviceCores"/>, or null (pinned, or not asked).</summary>
    public string? PinError => Volatile.Read(ref _pinError);

    /// <summary>Starts the device thread <c>nic/Name</c>. The interrupt starts disabled: the driver enables it once its handler is requested.</summary>
    public void Start()
    {
        if (_thread is not null)
        {
            throw new InvalidOperationException($"LoopbackNic '{Name}': already started.");
        }
        _runtime.ThrowIfNotAccepting("LoopbackNic.Start()");
        _thread = new Thread(DeviceMain) { Name = $"nic/{Name}", IsBackground = true };
        _thread.Start();
    }

    /// <summary>Stops the device thread (no more assertions); rethrows what stopped it if it failed. Data already received stays in the ring.</summary>
    public void Stop()
    {
        _stop = true;
        _doorbell.Unpark();
        _thread?.Join();
        _fault?.Throw();
    }

    /// <summary>Stops the device and closes its socket. The line stays allocated.</summary>
    public void Dispose()
    {
        _stop = true;
        _doorbell.Unpark();
        _thread?.Join();
        _socket.Dispose();
    }

    // ---- registers (the driver) ----

    /// <summary>
    /// The top half's read of the interrupt cause register, with auto-mask: if this device raised its line,
    /// clears the cause and disables the device interrupt in one atomic step and returns true — the caller
    /// now owns the receive path until it calls <see cref="EnableInterrupts"/>. Returns false (the handler
    /// returns IRQ_NONE) if this device did not interrupt. Lock-free; hard-IRQ safe.
    /// </summary>
    public bool AckAndDisableInterrupts()
    {
        int regs = Volatile.Read(ref _regs);
        while ((regs & RegCause) != 0)
        {
            int seen = Interlocked.CompareExchange(ref _regs, regs & ~(RegCause | RegEnabled), regs);
            if (seen == regs)
            {
                Interlocked.Increment(ref _acks);
                return true;
            }
            regs = seen;
        }
        Interlocked.Increment(ref _notMine);
        return false;
    }

    /// <summary>Masks the device interrupt (IMC): the device stops asserting; data keeps arriving in its socket. A pending cause stays for the top half.</summary>
    public void DisableInterrupts() => Interlocked.And(ref _regs, ~RegEnabled);

    /// <summary>
    /// Unmasks the device interrupt (IMS), typically after napi_complete_done() returned true. If data is
    /// waiting, the device asserts its line again at once. Hands the receive path back to the device.
    /// </summary>
    public void EnableInterrupts()
    {
        Interlocked.Or(ref _regs, RegEnabled);
        _doorbell.Unpark();
    }

    // ---- the receive path ("DMA"; owned by the top half after an ack, then by the NAPI poll) ----

    /// <summary>
    /// Moves pending datagrams from the socket into free RX descriptors until the socket is empty or the
    /// ring is full (the rest stays in the socket buffer). Call it only from the receive path that owns the
    /// ring: the top half after <see cref="AckAndDisableInterrupts"/> returned true, or the NAPI poll the top
    /// half scheduled. Allocation-free.
    /// </summary>
    /// <returns>Datagrams moved.</returns>
    public int ReceiveIntoRing()
    {
        int moved = 0;
        while (true)
        {
            var buffer = Rx.FreeBuffer();
            if (buffer is null)
            {
                _ringFull++;
                break;
            }
            int length = _socket.Receive(buffer, SocketFlags.None, out var error);
            if (error != SocketError.Success)
            {
                if (error != SocketError.WouldBlock)
                {
                    _rxErrors++; // e.g. an ICMP error queued on the socket; the next receive goes on
                }
                break;
            }
            Rx.Publish(length);
            _rxPackets++;
            _rxBytes += length;
            moved++;
        }
        return moved;
    }

    // ---- the device thread ----

    private void DeviceMain()
    {
        int sliceMicros = (int)_options.PollSlice.TotalMicroseconds;
        long sliceNs = (long)_options.PollSlice.TotalNanoseconds;
        bool notedMasked = false;
        try
        {
            if (_options.DeviceCores is { Count: > 0 } cores)
            {
                Volatile.Write(ref _pinError, Platform.ThreadPlacement.PinCurrentThreadToCores(cores.ToArray()));
            }
            while (!_stop)
            {
                int regs = Volatile.Read(ref _regs);
                if ((regs & RegEnabled) == 0 || (regs & RegCause) != 0)
                {
                    // Masked, or raised and not yet acknowledged: nothing to signal until the driver writes a
                    // register. Note once that data is waiting, then sleep (see the remarks on poll(2)).
                    if (!notedMasked && _socket.Poll(0, SelectMode.SelectRead))
                    {
                        Volatile.Write(ref _readyWhileMasked, _readyWhileMasked + 1);
                        notedMasked = true;
                    }
                    _doorbell.Park(sliceNs);
                    continue;
                }
                notedMasked = false;
                if (!_socket.Poll(sliceMicros, SelectMode.SelectRead))
                {
                    continue;
                }
                Volatile.Write(ref _readiness, _readiness + 1);
                // Raise the cause only if the registers are still as we read them: a mask written
                // meanwhile wins, and we look again.
                if (Interlocked.CompareExchange(ref _regs, regs | RegCause, regs) != regs)
                {
                    continue;
                }
                // Counted before the assertion: the handler may run, and a reader see its work, before
                // AssertEdge returns here.
                Volatile.Write(ref _interrupts, _interrupts + 1);
                var result = _runtime.Irqs.AssertEdge(Irq);
                switch (result)
                {
                    case IrqAssertResult.Delivered:
                        Volatile.Write(ref _delivered, _delivered + 1);
                        break;
                    case IrqAssertResult.Coalesced:
                        Volatile.Write(ref _coalesced, _coalesced + 1);
                        break;
                    default:
                        Volatile.Write(ref _latched, _latched + 1);
                        break;
                }
            }
        }
#pragma warning disable CA1031 // a device thread must not take the process down: Stop() rethrows
        catch (Exception e)
#pragma warning restore CA1031
        {
            _fault = ExceptionDispatchInfo.Capture(e);
        }
    }

    // ---- reporting ----

    /// <summary>The device's counts, and the kernel's view of its socket (Linux).</summary>
    public LoopbackNicStats GetStats()
    {
        var (queued, drops) = ReadProcNetUdp(LocalEndPoint.Port);
        return new LoopbackNicStats(
            Volatile.Read(ref _readiness), Volatile.Read(ref _readyWhileMasked), Volatile.Read(ref _interrupts),
            Volatile.Read(ref _delivered), Volatile.Read(ref _coalesced), Volatile.Read(ref _latched),
            Interlocked.Read(ref _acks), Interlocked.Read(ref _notMine), Volatile.Read(ref _rxPackets), Volatile.Read(ref _rxBytes),
            Volatile.Read(ref _ringFull), Volatile.Read(ref _rxErrors), Rx.Count, InterruptsEnabled, queued, drops);
    }

    /// <summary>/proc/net/udp's rx_queue (bytes) and drops for 127.0.0.1:<paramref name="port"/>; nulls where the file does not exist.</summary>
    private static (long? Queued, long? Drops) ReadProcNetUdp(int port)
    {
        const string Path = "/proc/net/udp";
        if (!OperatingSystem.IsLinux() || !File.Exists(Path))
        {
            return (null, null);
        }
        // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops"
        string local = "0100007F:" + port.ToString("X4", CultureInfo.InvariantCulture);
        foreach (string line in File.ReadLines(Path))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 13 && f[1] == local)
            {
                string[] queues = f[4].Split(':');
                long queued = long.Parse(queues[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                long drops = long.Parse(f[^1], CultureInfo.InvariantCulture);
                return (queued, drops);
            }
        }
        return (null, null);
    }
}

/// <summary>A <see cref="LoopbackNic"/>'s counts.</summary>
/// <param name="Readiness">Times the device found data readable with its interrupt enabled.</param>
/// <param name="ReadyWhileMasked">Masked (or unacknowledged) periods during which data was waiting: interrupts the mask held back.</param>
/// <param name="Interrupts">Assertions of the line.</param>
/// <param name="Delivered">Assertions sent to a CPU.</param>
/// <param name="Coalesced">Assertions merged with one already latched.</param>
/// <param name="Latched">Assertions that found the line masked at the controller (delivered at unmask).</param>
/// <param name="Acks">Interrupts the driver acknowledged (AckAndDisableInterrupts returned true).</param>
/// <param name="NotMine">Acknowledgement attempts that found no cause (IRQ_NONE).</param>
/// <param name="RxPackets">Datagrams moved into the ring.</param>
/// <param name="RxBytes">Bytes moved into the ring.</param>
/// <param name="RingFull">Receive passes that stopped at a full ring (whatever was waiting stayed in the socket buffer; not a drop).</param>
/// <param name="RxErrors">Receive errors other than "nothing pending".</param>
/// <param name="RingCount">Frames in the ring now.</param>
/// <param name="InterruptsEnabled">The device interrupt is enabled now.</param>
/// <param name="SocketQueuedBytes">Bytes waiting in the kernel's socket buffer (/proc/net/udp rx_queue), or null off Linux.</param>
/// <param name="KernelDrops">Datagrams the kernel dropped at this socket (/proc/net/udp drops; 0 unless senders outran the buffer), or null off Linux.</param>
public sealed record LoopbackNicStats(
    long Readiness, long ReadyWhileMasked, long Interrupts, long Delivered, long Coalesced, long Latched, long Acks, long NotMine,
    long RxPackets, long RxBytes, long RingFull, long RxErrors, int RingCount, bool InterruptsEnabled, long? SocketQueuedBytes, long? KernelDrops);
