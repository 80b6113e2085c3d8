// asio-echo: the echo server an Asio user would write (standalone Asio, Windows build).
//
//   asio-echo [--listen IP:PORT] [--threads N] [--buffer-size BYTES]
//
// One io_context (an I/O completion port on Windows) run by N threads. Each session reads with
// async_read_some into its own buffer, writes that back with async_write, then reads again: one
// operation in flight per connection, so a slow reader stops the server reading from it.
// Prints "listening on IP:PORT"; SIGINT stops it.
#include <asio.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using asio::ip::tcp;

namespace {

std::size_t buffer_size = 65536;

class session : public std::enable_shared_from_this<session> {
public:
    explicit session(tcp::socket socket)
        : socket_(std::move(socket)), data_(new char[buffer_size]) {}

    void start() { read(); }

private:
    void read()
    {
        auto self = shared_from_this();
        socket_.async_read_some(asio::buffer(data_.get(), buffer_size),
                                [this, self](std::error_code ec, std::size_t n) {
                                    if (!ec)
                                        write(n);
                                });
    }

    void write(std::size_t n)
    {
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(data_.get(), n),
                          [this, self](std::error_code ec, std::size_t) {
                              if (!ec)
                                  read();
                          });
    }

    tcp::socket socket_;
    std::unique_ptr<char[]> data_; // not value-initialised: untouched pages stay unallocated
};

class server {
public:
    server(asio::io_context &io, const tcp::endpoint &at) : acceptor_(io, at) { accept(); }

    tcp::endpoint local() const { return acceptor_.local_endpoint(); }

private:
    void accept()
    {
        acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
            if (!ec)
                std::make_shared<session>(std::move(socket))->start();
            if (ec != asio::error::operation_aborted)
                accept();
        });
    }

    tcp::acceptor acceptor_;
};

[[noreturn]] void usage(int status)
{
    std::fprintf(status ? stderr : stdout,
                 "usage: asio-echo [--listen IP:PORT] [--threads N] [--buffer-size BYTES]\n");
    std::exit(status);
}

} // namespace

int main(int argc, char **argv)
{
    std::string listen_at = "127.0.0.1:7007";
    int threads = 1;

    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--help")
            usage(0);
        if (i + 1 >= argc)
            usage(2);
        if (arg == "--listen")
            listen_at = argv[++i];
        else if (arg == "--threads")
            threads = std::atoi(argv[++i]);
        else if (arg == "--buffer-size")
            buffer_size = static_cast<std::size_t>(std::atol(argv[++i]));
        else
            usage(2);
    }
    std::size_t colon = listen_at.rfind(':');
    if (threads < 1 || threads > 256 || buffer_size < 512 || colon == std::string::npos)
        usage(2);
    std::string host = listen_at.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);

    try {
        asio::io_context io(threads);
        server srv(io, tcp::endpoint(asio::ip::make_address(host),
                                     static_cast<unsigned short>(std::atoi(listen_at.c_str() + colon + 1))));
        tcp::endpoint at = srv.local();
        std::string shown = at.address().is_v6() ? "[" + at.address().to_string() + "]"
                                                 : at.address().to_string();
        std::printf("listening on %s:%u\n", shown.c_str(), static_cast<unsigned>(at.port()));
        std::fflush(stdout);

        asio::signal_set signals(io, SIGINT, SIGTERM);
        signals.async_wait([&io](std::error_code, int) { io.stop(); });

        std::vector<std::thread> pool;
        for (int i = 1; i < threads; i++)
            pool.emplace_back([&io] { io.run(); });
        io.run();
        for (auto &t : pool)
            t.join();
    } catch (const std::exception &e) {
        std::fprintf(stderr, "asio-echo: %s\n", e.what());
        return 1;
    }
    return 0;
}
