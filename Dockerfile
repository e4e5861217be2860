# Builds the onduty binary into a small image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /onduty ./cmd/onduty

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /onduty /onduty
EXPOSE 8080
ENTRYPOINT ["/onduty"]
CMD ["serve"]
